//! The tags of a route's entries: templates filled from the path and query parameters, and a
//! closure of the route's own (`docs/web.md#rc12-tags`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Query, RawPathParams};
use http::request::Parts;

/// A closure that computes tags from the request.
pub(crate) type TagFn = Arc<dyn Fn(&Parts) -> Vec<String> + Send + Sync>;

/// One piece of a tag template.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Param(String),
}

/// A tag such as `product:{id}`: `{name}` is the path parameter `name`, else the query
/// parameter `name`. A `{` without its `}` is text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TagTemplate(Vec<Piece>);

impl TagTemplate {
    pub(crate) fn parse(template: &str) -> TagTemplate {
        let mut pieces = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}') else {
                break;
            };
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_owned()));
            }
            pieces.push(Piece::Param(rest[open + 1..open + close].to_owned()));
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        TagTemplate(pieces)
    }

    fn has_params(&self) -> bool {
        self.0.iter().any(|p| matches!(p, Piece::Param(_)))
    }

    /// The tag, or the name of the first parameter the request does not have.
    fn fill(&self, params: &HashMap<String, String>) -> Result<String, String> {
        let mut tag = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(text) => tag.push_str(text),
                Piece::Param(name) => match params.get(name) {
                    Some(value) => tag.push_str(value),
                    None => return Err(name.clone()),
                },
            }
        }
        Ok(tag)
    }
}

/// The tags of the request's entry, or `None` when a template names a parameter the request does
/// not have: such a response is not cached, since the tag meant to invalidate it could not be
/// attached (`docs/web.md#rc12-tags`).
pub(crate) async fn resolve(
    templates: &[TagTemplate],
    closure: Option<&TagFn>,
    parts: &mut Parts,
) -> Option<Vec<String>> {
    let mut tags = Vec::new();
    if templates.iter().any(TagTemplate::has_params) {
        let mut params: HashMap<String, String> = Query::try_from_uri(&parts.uri)
            .map(|Query(query)| query)
            .unwrap_or_default();
        // Path parameters win over query parameters of the same name.
        if let Ok(path) = RawPathParams::from_request_parts(parts, &()).await {
            for (name, value) in &path {
                params.insert(name.to_owned(), value.to_owned());
            }
        }
        for template in templates {
            match template.fill(&params) {
                Ok(tag) => tags.push(tag),
                Err(missing) => {
                    tracing::warn!(
                        uri = %parts.uri,
                        parameter = %missing,
                        "a response cache tag names a parameter this request does not have; \
                         the response is not cached"
                    );
                    return None;
                }
            }
        }
    } else {
        tags.extend(
            templates
                .iter()
                .filter_map(|t| t.fill(&HashMap::new()).ok()),
        );
    }
    if let Some(closure) = closure {
        tags.extend(closure(parts));
    }
    Some(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_fills_its_parameters() {
        let template = TagTemplate::parse("user:{id}:{tab}");
        let params = HashMap::from([
            ("id".to_owned(), "7".to_owned()),
            ("tab".to_owned(), "posts".to_owned()),
        ]);
        assert_eq!(template.fill(&params).as_deref(), Ok("user:7:posts"));
        assert_eq!(
            TagTemplate::parse("x:{missing}").fill(&params),
            Err("missing".to_owned())
        );
        assert_eq!(
            TagTemplate::parse("odd{").fill(&params).as_deref(),
            Ok("odd{")
        );
    }
}
