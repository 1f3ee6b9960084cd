//! Matching one message against 10, 1,000 and 10,000 rules: the compiled matcher (hash map for
//! exact keywords, one Aho-Corasick automaton, one RegexSet) next to the naive loop over the
//! rules. Rules are a realistic mix: 40% contains, 30% exact, 25% prefix, 5% regex.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use shared::rules::file::RulesFile;
use shared::rules::matcher::{Matcher, NaiveMatcher};

/// A distinct, pronounceable keyword per index.
fn word(i: usize) -> String {
    const SYLLABLES: [&str; 16] =
        ["ka", "mi", "to", "re", "su", "no", "ha", "chi", "ma", "ku", "ro", "ne", "sa", "yo", "te", "ri"];
    let mut n = i * 7919 + 17;
    let mut w = String::new();
    for _ in 0..4 {
        w.push_str(SYLLABLES[n % 16]);
        n /= 16;
    }
    format!("{w}{i}")
}

fn rules(n: usize) -> RulesFile {
    let mut yaml = String::from("replies:\n");
    for i in 0..n {
        let m = match i % 20 {
            0..=7 => format!("contains: \"{}\"", word(i)),
            8..=13 => format!("exact: \"{}\"", word(i)),
            14..=18 => format!("prefix: \"{}\"", word(i)),
            _ => format!("regex: \"^{}[0-9]+$\"", word(i)),
        };
        yaml += &format!("  - id: r{i}\n    match: {{ {m} }}\n    messages: [ok]\n");
    }
    RulesFile::parse(&yaml).expect("generated rules are valid")
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("match_one_message");
    for n in [10usize, 1_000, 10_000] {
        let file = rules(n);
        let fast = Matcher::from_matches(file.replies.iter().map(|r| &r.matches), true).unwrap();
        let naive = NaiveMatcher::new(file.replies.iter().map(|r| &r.matches));
        // A typical message that hits one contains-rule somewhere in the middle of the list.
        let text = format!("Hello! Do you still have the {} cake today, around 5pm?", word(n / 2 - n / 2 % 20));
        assert_eq!(fast.hits(&text).len(), 1);
        assert_eq!(naive.hits(&text).len(), 1);
        group.bench_with_input(BenchmarkId::new("compiled", n), &text, |b, t| b.iter(|| fast.hits(black_box(t))));
        group.bench_with_input(BenchmarkId::new("naive_loop", n), &text, |b, t| b.iter(|| naive.hits(black_box(t))));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
