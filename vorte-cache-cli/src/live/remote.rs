//! A running service's figures: its `/stats` route (`vorte-cache-axum`'s `health::routes`,
//! `docs/web.md#health-and-stats-routes`), read over plain HTTP.
//!
//! Plain `http://` only: the client is built without TLS to keep the binary lean, and an
//! `https://` URL is reported as an error of that source (`docs/cli.md#stats`).

use std::sync::LazyLock;
use std::time::Duration;

use super::view::{SourceView, StatsJson};

/// How long one read of `/stats` may take, connection included: the route reads counters only,
/// so a slower answer means the service is in trouble, and `top` must not stall on it.
const TIMEOUT: Duration = Duration::from_secs(2);

/// The one client of every read: `top` reads each second, and reuses its connections.
static AGENT: LazyLock<ureq::Agent> = LazyLock::new(|| {
    ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .build()
        .into()
});

/// Reads every URL at once; a source that cannot be read is a view with its error.
pub(crate) async fn read_all(urls: &[String]) -> Vec<SourceView> {
    let reads = urls.iter().map(|url| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || read(&url))
    });
    let mut views = Vec::with_capacity(urls.len());
    for (url, read) in urls.iter().zip(reads.collect::<Vec<_>>()) {
        views.push(match read.await {
            Ok(view) => view,
            Err(e) => SourceView::failed(&shown(url), format!("the read stopped: {e}")),
        });
    }
    views
}

/// One service's view.
fn read(url: &str) -> SourceView {
    let source = shown(url);
    match fetch(url) {
        Ok(stats) => SourceView::from_stats(&source, stats),
        Err(e) => SourceView::failed(&source, e),
    }
}

fn fetch(url: &str) -> Result<StatsJson, String> {
    // Should an error quote the URL, it is the shown one.
    let mut response = AGENT
        .get(url)
        .call()
        .map_err(|e| e.to_string().replace(url, &shown(url)))?;
    response
        .body_mut()
        .read_json::<StatsJson>()
        .map_err(|e| format!("not a vorte-cache stats answer: {e}"))
}

/// `url` with any `user:password@` replaced by `***@`: sources are printed, secrets never are.
pub(crate) fn shown(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::shown;

    #[test]
    fn credentials_in_a_url_are_hidden() {
        assert_eq!(
            shown("http://ops:s3cret@host:8080/ops/stats"),
            "http://***@host:8080/ops/stats"
        );
        assert_eq!(shown("http://host:8080/a@b"), "http://host:8080/a@b");
        assert_eq!(shown("host:8080"), "host:8080");
    }
}
