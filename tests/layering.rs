//! The data flows one way (`docs/architecture.md`): application → handle → engine →
//! stores and bus. This reads `vorte-cache/src` and fails when a module names one above it, so
//! the layering cannot erode unseen. Doc comments, `#[cfg(test)] mod tests { .. }` blocks and test
//! modules in files of their own (`tests.rs`, `*_tests.rs`, `tests/`) are not code paths and are
//! skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module's rank: a module may name only modules of a lower rank (or its own).
fn rank(module: &str) -> Option<u8> {
    Some(match module {
        "private" => 9, // the macro door sits above everything it opens onto
        "app" => 8,
        // `companions`: what `#[cached]`'s generated companions run through the door, the
        // global cache's delete and a set with the function's options: a handle, as `cache` is.
        "cache" | "companions" => 7,
        "engine" | "testing" => 6,
        "bus" | "tags" => 5,
        // The instrumentation point: the engine and the bus measure through it; it wraps stores.
        "observe" => 4,
        // L1's policy driven key by key for trace replays: a handle onto L1 alone.
        "simulate" => 4,
        "store" | "l1" => 3,
        // What a loader is given and decides: the engine reads it; it names codecs and layers.
        "config" | "load" => 2,
        "codec" | "glob" | "key" | "stats" | "cached" | "events" => 1,
        "error" | "layer" | "clock" | "fence" | "flight" | "histogram" => 0,
        _ => return None,
    })
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        panic!("cannot read {}", dir.display())
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `crate::<module>` names in the code lines of `src` (not comments, not the test module).
fn named_modules(src: &str) -> BTreeSet<String> {
    let code = match src.find("#[cfg(test)]\nmod tests {") {
        Some(i) => &src[..i],
        None => src,
    };
    let mut names = BTreeSet::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let name = if name == "__private" {
                "private".to_owned()
            } else {
                name
            };
            names.insert(name);
        }
    }
    names
}

#[test]
fn no_module_names_a_module_above_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../vorte-cache/src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    assert!(files.len() > 20, "found only {} source files", files.len());
    let mut upward: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in &files {
        let relative = file.strip_prefix(&root).unwrap_or(file);
        // A test module in a file of its own (`#[cfg(test)] mod tests;`) is no code path either.
        if relative.components().any(|c| {
            let c = c.as_os_str().to_string_lossy();
            c == "tests" || c == "tests.rs" || c.ends_with("_tests.rs")
        }) {
            continue;
        }
        let module = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(|s| s.trim_end_matches(".rs").to_owned())
            .unwrap_or_default();
        if module == "lib" {
            continue; // the facade declares and re-exports everything
        }
        let Some(own) = rank(&module) else {
            panic!(
                "{}: module `{module}` has no rank in this test",
                relative.display()
            )
        };
        let Ok(src) = std::fs::read_to_string(file) else {
            panic!("cannot read {}", file.display())
        };
        for named in named_modules(&src) {
            if named == module {
                continue;
            }
            match rank(&named) {
                Some(r) if r < own => {}
                // Public re-exports at the crate root (`crate::Result`, `crate::Cache`, ...)
                // are the facade, not a module.
                None if named.chars().next().is_some_and(char::is_uppercase) => {}
                _ => upward
                    .entry(relative.display().to_string())
                    .or_default()
                    .push(named),
            }
        }
    }
    assert!(
        upward.is_empty(),
        "modules naming one at or above their own rank: {upward:?}"
    );
}
