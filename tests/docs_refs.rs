//! The repository explains itself (`docs/guarantees.md`): every `docs/<page>.md#anchor` cited in
//! code, tests or docs names a heading of that page, and every test that `guarantees.md` and
//! `consistency.md` cite as a proof exists.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => panic!("{}: {e}", path.display()),
    }
}

/// Source and doc files of the repository (not `target/`, not hidden folders).
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        panic!("cannot read {}", dir.display())
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" {
                files(&path, out);
            }
        } else if name.ends_with(".rs") || name.ends_with(".md") {
            out.push(path);
        }
    }
}

/// GitHub's anchor of a heading: lower case, punctuation other than `-` and `_` dropped, spaces
/// as `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(page: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut out = BTreeSet::new();
    for line in page.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            out.insert(slug(line.trim_start_matches('#')));
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'
}

#[test]
fn every_cited_anchor_and_test_exists() {
    let root = root();
    let mut pages = BTreeMap::new();
    for entry in std::fs::read_dir(root.join("docs"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") {
            pages.insert(name, anchors(&read(&entry.path())));
        }
    }
    assert!(
        pages.contains_key("guarantees.md"),
        "docs/guarantees.md is missing"
    );
    let mut all = Vec::new();
    files(&root, &mut all);
    let mut broken = Vec::new();
    let mut functions = BTreeSet::new();
    for file in &all {
        let text = read(file);
        if file.extension().is_some_and(|e| e == "rs") {
            for part in text.split("fn ").skip(1) {
                functions.insert(
                    part.chars()
                        .take_while(|c| is_ident(*c))
                        .collect::<String>(),
                );
            }
        }
        for (page, known) in &pages {
            let cite = format!("{page}#");
            for (i, _) in text.match_indices(&cite) {
                let anchor: String = text[i + cite.len()..]
                    .chars()
                    .take_while(|c| is_ident(*c) || *c == '-')
                    .collect();
                // An empty anchor is the page's own name in prose (`grep 'guarantees.md#'`).
                if !anchor.is_empty() && !known.contains(&anchor) {
                    broken.push(format!("{}: {page}#{anchor}", file.display()));
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "anchors that name no heading: {broken:#?}"
    );

    // Tests cited as proofs: `name` or `module::name`, long enough to be a test name.
    let mut missing = Vec::new();
    for page in ["guarantees.md", "consistency.md"] {
        let text = read(&root.join("docs").join(page));
        for quoted in text.split('`').skip(1).step_by(2) {
            let name = quoted.rsplit("::").next().unwrap_or(quoted);
            let looks_like_test = name.len() > 12
                && name.chars().all(is_ident)
                && name.contains('_')
                && quoted.chars().all(|c| is_ident(c) || c == ':');
            // Config keys look like test names too.
            let config_key = ["max_value_bytes", "breaker_threshold", "breaker_cooldown"];
            if looks_like_test && !functions.contains(name) && !config_key.contains(&name) {
                missing.push(format!("{page}: `{quoted}`"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "cited tests that do not exist: {missing:#?}"
    );
}

/// The README says what `.ci/run` installs on a fresh machine: every Debian package of its
/// `need_apt` lines and the PyPI package that gives `moto_server`, so a newcomer can install the
/// same by hand.
#[test]
fn the_readme_lists_what_ci_installs() {
    let ci = read(&root().join(".ci/run"));
    let readme = read(&root().join("README.md"));
    let start = readme
        .find("(`.ci/run` installs what is")
        .unwrap_or_else(|| panic!("README.md has no list of what .ci/run installs"));
    let list = &readme[start
        ..readme[start..]
            .find("):")
            .map_or(readme.len(), |e| start + e)];
    let mut wanted: Vec<String> = ci
        .lines()
        .filter_map(|line| line.trim().strip_prefix("need_apt "))
        .filter_map(|args| args.split_whitespace().nth(1).map(str::to_owned))
        .collect();
    assert!(wanted.len() >= 5, "no need_apt lines read from .ci/run");
    if ci.contains("'moto[server]'") {
        wanted.push("moto[server]".to_owned());
        wanted.push("moto_server".to_owned());
    }
    let missing: Vec<&String> = wanted
        .iter()
        .filter(|p| !list.contains(&format!("`{p}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "README.md's install list lacks {missing:?}:\n{list}"
    );
}
