//! The house rules, checked on the source tree (no services needed):
//! - no import cycle between files of a crate (file A names something of file B, and B, directly
//!   or through other files, names something of A);
//! - the campaign domain and ports name no AWS crate and no adapter; the use cases name no AWS
//!   crate;
//! - `oa`'s campaign commands go through the admin port, not a DynamoDB store;
//! - no campaign file over 800 lines;
//! - every relative link in the README and `docs/` resolves (and its `#anchor`, when it has one).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use integration_tests::repo_root;

/// The crates whose files can name each other (a crate's `src/`, without `main.rs` and `bin/`,
/// which are crates of their own).
const CRATES: &[&str] = &[
    "shared",
    "functions/webhook",
    "functions/keyword-reply",
    "functions/tagger",
    "functions/campaign",
    "functions/multicast",
    "tools/oa",
    "tools/line-sim",
    "tests",
];

const CAMPAIGN_DOMAIN: &[&str] = &[
    "shared/src/campaign/file.rs",
    "shared/src/campaign/price.rs",
    "shared/src/campaign/model.rs",
    "shared/src/campaign/batch.rs",
    "shared/src/campaign/caps.rs",
    "shared/src/campaign/classify.rs",
    "shared/src/campaign/pace.rs",
];

const CAMPAIGN_USE_CASES: &[&str] = &[
    "shared/src/campaign/plan.rs",
    "shared/src/campaign/send.rs",
    "shared/src/campaign/resume.rs",
    "shared/src/campaign/admin.rs",
];

const MAX_CAMPAIGN_FILE_LINES: usize = 800;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The text with comments, strings and character literals blanked out (newlines kept).
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            let end = rest.find('\n').map_or(b.len(), |n| i + n);
            i = end;
        } else if rest.starts_with("/*") {
            let mut depth = 0;
            while i < b.len() {
                if text[i..].starts_with("/*") {
                    depth += 1;
                    i += 2;
                } else if text[i..].starts_with("*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if b[i] == b'\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
            }
            out.push(' ');
        } else if let Some(raw) = raw_string_start(rest) {
            // r"..." or r#"..."# (and br...): ends at the quote followed by as many #.
            let hashes = raw;
            let open = rest.find('"').unwrap_or(0) + 1;
            let close = format!("\"{}", "#".repeat(hashes));
            let end = rest[open..].find(&close).map_or(b.len(), |n| i + open + n + close.len());
            out.extend(text[i..end].chars().filter(|c| *c == '\n'));
            out.push_str("\"\"");
            i = end;
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                if b[j] == b'\\' {
                    j += 1;
                }
                if j < b.len() && b[j] == b'\n' {
                    out.push('\n');
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j + 1;
        } else if b[i] == b'\'' {
            // A character literal ('a', '\n', '\u{1F600}'), or a lifetime ('a).
            let lit = if let Some(escaped) = rest.strip_prefix("'\\") {
                escaped.find('\'').map(|n| n + 3)
            } else {
                let c = rest[1..].chars().next().map_or(0, char::len_utf8);
                (rest[1 + c..].starts_with('\'')).then_some(c + 2)
            };
            match lit {
                Some(len) => {
                    out.push_str("' '");
                    i += len;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// `r"`, `r#"`, `br"`...: how many `#`.
fn raw_string_start(rest: &str) -> Option<usize> {
    let r = rest.strip_prefix('b').unwrap_or(rest).strip_prefix('r')?;
    let hashes = r.len() - r.trim_start_matches('#').len();
    r[hashes..].starts_with('"').then_some(hashes)
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Path,
    Open,
    Close,
    Other(char),
}

fn tokens(code: &str) -> Vec<Token> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = vec![];
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
            continue;
        }
        if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push(Token::Path);
            i += 2;
            continue;
        }
        match c {
            '{' => out.push(Token::Open),
            '}' => out.push(Token::Close),
            c if c.is_whitespace() => {}
            c => out.push(Token::Other(c)),
        }
        i += 1;
    }
    out
}

/// One crate's files by module path (`[]` is the crate root).
struct Crate {
    files: BTreeMap<Vec<String>, PathBuf>,
}

impl Crate {
    fn load(root: &Path) -> Crate {
        let src = root.join("src");
        let mut paths = vec![];
        rust_files(&src, &mut paths);
        let mut files = BTreeMap::new();
        for path in paths {
            let rel = path.strip_prefix(&src).unwrap();
            let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if parts.first().is_some_and(|p| p == "bin") || parts == ["main.rs"] {
                continue;
            }
            let last = parts.pop().unwrap();
            match last.as_str() {
                "lib.rs" if parts.is_empty() => {}
                "mod.rs" => {}
                other => parts.push(other.trim_end_matches(".rs").to_string()),
            }
            files.insert(parts, path);
        }
        Crate { files }
    }

    /// The file a path (resolved from the crate root) names: its longest prefix that is a file's
    /// module.
    fn file_of(&self, path: &[String]) -> Option<&PathBuf> {
        (0..=path.len()).rev().find_map(|n| self.files.get(&path[..n]))
    }

    /// Whether `module` has a child module `name` in a file of its own.
    fn has_child(&self, module: &[String], name: &str) -> bool {
        let mut child = module.to_vec();
        child.push(name.to_string());
        self.files.contains_key(&child)
    }
}

/// The paths (`use` trees expanded, and paths in the code) a file names, each resolved from the
/// crate root; None where a path leaves the crate.
fn named_paths(krate: &Crate, module: &[String], code: &str) -> Vec<Vec<String>> {
    let toks = tokens(code);
    let mut out = vec![];
    // The module each position is in: the file's, plus inline `mod name { ... }` blocks.
    let mut inline: Vec<(String, usize)> = vec![];
    let mut depth = 0usize;
    let here = |inline: &[(String, usize)]| -> Vec<String> {
        module.iter().cloned().chain(inline.iter().map(|(n, _)| n.clone())).collect()
    };
    let resolve = |current: &[String], segments: &[String]| -> Option<Vec<String>> {
        let (first, rest) = segments.split_first()?;
        let mut base: Vec<String> = match first.as_str() {
            "crate" => vec![],
            "self" => current.to_vec(),
            "super" => {
                let mut b = current.to_vec();
                b.pop()?;
                let mut rest = rest;
                while rest.first().is_some_and(|s| s == "super") {
                    b.pop()?;
                    rest = &rest[1..];
                }
                b.extend(rest.iter().cloned());
                return Some(b);
            }
            name if krate.has_child(current, name) => {
                let mut b = current.to_vec();
                b.push(name.to_string());
                b
            }
            _ => return None,
        };
        base.extend(rest.iter().cloned());
        Some(base)
    };
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            Token::Ident(k) if k == "mod" => {
                if let (Some(Token::Ident(name)), Some(Token::Open)) = (toks.get(i + 1), toks.get(i + 2)) {
                    depth += 1;
                    inline.push((name.clone(), depth));
                    i += 3;
                    continue;
                }
            }
            Token::Open => depth += 1,
            Token::Close => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            Token::Ident(k) if k == "use" => {
                let end = toks[i..].iter().position(|t| *t == Token::Other(';')).map_or(toks.len(), |n| i + n);
                let current = here(&inline);
                let mut trees = vec![];
                use_tree(&toks[i + 1..end], vec![], &mut trees);
                for segments in trees {
                    out.extend(resolve(&current, &segments));
                }
                i = end;
                continue;
            }
            Token::Ident(first)
                if toks.get(i + 1) == Some(&Token::Path) && toks.get(i.wrapping_sub(1)) != Some(&Token::Path) =>
            {
                let mut segments = vec![first.clone()];
                let mut j = i + 1;
                while let (Some(Token::Path), Some(Token::Ident(s))) = (toks.get(j), toks.get(j + 1)) {
                    segments.push(s.clone());
                    j += 2;
                }
                out.extend(resolve(&here(&inline), &segments));
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Expands a `use` tree (`a::b::{c, d::{e, f}}`, `a::*`, `a as b`) into its paths.
fn use_tree(toks: &[Token], prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut path = prefix;
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            Token::Ident(s) if s == "as" => break,
            Token::Ident(s) => path.push(s.clone()),
            Token::Path | Token::Other('*') => {}
            Token::Open => {
                // The group: split at top-level commas.
                let mut level = 0;
                let mut start = i + 1;
                for j in i + 1..toks.len() {
                    match &toks[j] {
                        Token::Open => level += 1,
                        Token::Close if level == 0 => {
                            use_tree(&toks[start..j], path.clone(), out);
                            return;
                        }
                        Token::Close => level -= 1,
                        Token::Other(',') if level == 0 => {
                            use_tree(&toks[start..j], path.clone(), out);
                            start = j + 1;
                        }
                        _ => {}
                    }
                }
                return;
            }
            _ => {}
        }
        i += 1;
    }
    if !path.is_empty() {
        out.push(path);
    }
}

/// The file graph of a crate: file → files it names.
fn graph(krate: &Crate) -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    let mut edges = BTreeMap::new();
    for (module, path) in &krate.files {
        let code = code_only(&std::fs::read_to_string(path).unwrap());
        let targets: BTreeSet<PathBuf> = named_paths(krate, module, &code)
            .iter()
            .filter_map(|p| krate.file_of(p))
            .filter(|t| *t != path)
            .cloned()
            .collect();
        edges.insert(path.clone(), targets);
    }
    edges
}

/// A cycle through `from`, if there is one: the files on the way back to it.
fn cycle_through(edges: &BTreeMap<PathBuf, BTreeSet<PathBuf>>, from: &PathBuf) -> Option<Vec<PathBuf>> {
    let mut seen: BTreeMap<PathBuf, PathBuf> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([from.clone()]);
    while let Some(node) = queue.pop_front() {
        for next in edges.get(&node).into_iter().flatten() {
            if next == from {
                let mut way = vec![node.clone()];
                while let Some(prev) = seen.get(way.last().unwrap()) {
                    way.push(prev.clone());
                }
                way.reverse();
                return Some(way);
            }
            if !seen.contains_key(next) && next != from {
                seen.insert(next.clone(), node.clone());
                queue.push_back(next.clone());
            }
        }
    }
    None
}

fn relative(path: &Path) -> String {
    path.strip_prefix(repo_root()).unwrap_or(path).display().to_string()
}

#[test]
fn no_file_names_a_file_that_names_it_back() {
    let mut cycles = BTreeSet::new();
    for krate in CRATES {
        let krate = Crate::load(&repo_root().join(krate));
        let edges = graph(&krate);
        for file in edges.keys() {
            if let Some(way) = cycle_through(&edges, file) {
                // One line per cycle, whichever file it was found from.
                let mut names: Vec<String> = way.iter().map(|p| relative(p)).collect();
                let start = names.iter().enumerate().min_by_key(|(_, n)| (*n).clone()).map_or(0, |(i, _)| i);
                names.rotate_left(start);
                cycles.insert(names.join(" -> "));
            }
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.into_iter().collect::<Vec<_>>().join("\n"));
}

#[test]
fn the_cycle_check_sees_uses_groups_paths_and_inline_modules() {
    let dir = std::env::temp_dir().join(format!("layout-{}", std::process::id()));
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::write(src.join("lib.rs"), "pub mod a;\npub mod b;\n").unwrap();
    std::fs::write(src.join("a/mod.rs"), "pub mod x;\nuse x::Thing; // relative\n").unwrap();
    std::fs::write(
        src.join("a/x.rs"),
        "/* crate::b::Nothing */ const S: &str = \"crate::b::N\";\nfn f() { crate::b::g(); }\n",
    )
    .unwrap();
    std::fs::write(src.join("b.rs"), "mod tests {\n    use super::*;\n}\nuse crate::a::{self as m, x::{Thing}};\n")
        .unwrap();
    let krate = Crate::load(&dir);
    let edges = graph(&krate);
    let names = |p: &str| {
        edges[&src.join(p)].iter().map(|t| t.strip_prefix(&src).unwrap().display().to_string()).collect::<Vec<_>>()
    };
    assert_eq!(names("a/mod.rs"), ["a/x.rs"], "a relative use of a child");
    assert_eq!(names("a/x.rs"), ["b.rs"], "a path in code, not the ones in comments and strings");
    assert_eq!(names("b.rs"), ["a/mod.rs", "a/x.rs"], "a group; the inline module's super is the file");
    assert!(cycle_through(&edges, &src.join("b.rs")).is_some(), "b -> a/x -> b");
    assert!(cycle_through(&edges, &src.join("lib.rs")).is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}

fn code_of(rel: &str) -> String {
    code_only(&std::fs::read_to_string(repo_root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}")))
}

#[test]
fn the_campaign_domain_and_ports_name_no_aws_crate_and_no_adapter() {
    let mut wrong = vec![];
    for rel in CAMPAIGN_DOMAIN.iter().chain(["shared/src/campaign/ports.rs"].iter()) {
        let code = code_of(rel);
        for bad in ["aws_", "adapters", "reqwest", "line::client"] {
            if code.contains(bad) {
                wrong.push(format!("{rel} names {bad}"));
            }
        }
    }
    for rel in CAMPAIGN_USE_CASES {
        let code = code_of(rel);
        for bad in ["aws_", "reqwest", "adapters::dynamodb", "adapters::sqs", "adapters::line"] {
            if code.contains(bad) {
                wrong.push(format!("{rel} names {bad}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn oas_campaign_commands_go_through_the_admin_port() {
    let code = code_of("tools/oa/src/campaigns.rs");
    assert!(code.contains("dyn CampaignAdmin"), "oa holds the admin port");
    for bad in ["DynamoCampaigns", "adapters::dynamodb::campaigns", "aws_sdk_dynamodb"] {
        assert!(!code.contains(bad), "tools/oa/src/campaigns.rs names {bad}: it is wiring over the admin port");
    }
}

#[test]
fn no_campaign_file_is_over_800_lines() {
    let mut files = vec![];
    rust_files(&repo_root().join("shared/src/campaign"), &mut files);
    for rel in [
        "shared/src/adapters/dynamodb/campaigns.rs",
        "shared/src/adapters/dynamodb/batches.rs",
        "shared/src/adapters/dynamodb/caps.rs",
        "shared/src/adapters/dynamodb/schedule.rs",
        "shared/src/adapters/memory/campaigns.rs",
        "shared/src/adapters/memory/caps.rs",
        "shared/src/adapters/memory/line.rs",
        "shared/src/adapters/memory/schedule.rs",
        "tools/oa/src/campaigns.rs",
        "functions/campaign/src/handler.rs",
        "functions/multicast/src/handler.rs",
        "tests/src/campaigns.rs",
        "tests/tests/campaigns.rs",
        "tests/tests/contract.rs",
    ] {
        files.push(repo_root().join(rel));
    }
    let long: Vec<String> = files
        .iter()
        .map(|f| (relative(f), std::fs::read_to_string(f).unwrap_or_default().lines().count()))
        .filter(|(_, n)| *n > MAX_CAMPAIGN_FILE_LINES)
        .map(|(f, n)| format!("{f}: {n} lines"))
        .collect();
    assert!(long.is_empty(), "over {MAX_CAMPAIGN_FILE_LINES} lines: {long:#?}");
}

/// GitHub's anchor of a heading: lowercase, letters, digits, `-` and `_`, spaces as `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut out = BTreeSet::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            out.insert(anchor(line.trim_start_matches('#')));
        }
    }
    out
}

/// The targets of the inline links `[text](target)` outside code.
fn links(markdown: &str) -> Vec<String> {
    let mut in_code = false;
    let mut out = vec![];
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        // Inline code spans hold no links.
        let text: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        let mut rest = text.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            out.push(after[..end].trim().to_string());
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn every_relative_link_in_the_readme_and_docs_resolves() {
    let root = repo_root();
    let mut pages = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    assert!(docs.len() >= 5, "the reference lives in docs/, one topic a file");
    pages.extend(docs);
    let mut broken = vec![];
    let mut checked = 0;
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        for target in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, fragment) = target.split_once('#').unwrap_or((&target, ""));
            let resolved = if file.is_empty() { page.clone() } else { page.parent().unwrap().join(file) };
            checked += 1;
            if !resolved.exists() {
                broken.push(format!("{}: {target} (no such file)", relative(page)));
            } else if !fragment.is_empty()
                && resolved.extension().is_some_and(|e| e == "md")
                && !anchors(&std::fs::read_to_string(&resolved).unwrap()).contains(fragment)
            {
                broken.push(format!("{}: {target} (no such heading)", relative(page)));
            }
        }
    }
    assert!(checked > 20, "only {checked} links found: is the link reader broken?");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_link_reader_finds_links_and_headings_as_github_does() {
    let md = "# How campaigns work\n[a](docs/x.md) `[not](a link)` [b](y.md#how-campaigns-work)\n```\n[c](z.md)\n```\n";
    assert_eq!(links(md), ["docs/x.md", "y.md#how-campaigns-work"]);
    assert!(anchors(md).contains("how-campaigns-work"));
    assert_eq!(anchor(" The `oa` CLI"), "the-oa-cli");
}
