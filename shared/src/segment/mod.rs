//! Segment expressions: which friends a push goes to.
//!
//! ```text
//! expr          := or
//! or            := and ("OR" and)*
//! and           := not ("AND" not)*
//! not           := "NOT" not | atom
//! atom          := "(" expr ")" | "all" | tagged | friend_since | friend_before | TAG
//! tagged        := "tagged" "(" TAG ["," "within" SPAN] ")"     tag set within the last SPAN
//! friend_since  := "friend_since" "(" SPAN ")"                  became a friend within the last SPAN
//! friend_before := "friend_before" "(" SPAN | DATE ")"          a friend for longer than SPAN / since before DATE
//! TAG           := letter (letter | : | . | -)*  e.g. dessert, cart:open, bought:shoes, bought:スイーツ
//!                  letter = a letter of any script (lower case) or digit or _
//! SPAN          := digits + s|m|h|d            e.g. 3d, 12h
//! DATE          := YYYY-MM-DD (UTC)
//! ```
//!
//! Keywords (`AND`, `OR`, `NOT`, `all`, function names) are case-insensitive; tags are lower case.
//! Parentheses and NOTs nest at most [`MAX_DEPTH`] deep.
//! A friend who blocked the account never matches, whatever the expression. Expired tags do not
//! count. Errors carry the character position; [`SegmentError::render`] points at it with a caret.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use crate::names::{format_span, is_tag, parse_span};

pub mod resolve;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    All,
    /// The friend has the tag (unexpired).
    Tag(String),
    /// The friend got the tag within the last `within`.
    Tagged {
        tag: String,
        within: Option<Duration>,
    },
    /// Became a friend within the last span.
    FriendSince(Duration),
    /// Has been a friend since before a moment.
    FriendBefore(Before),
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Before {
    /// Longer ago than this span.
    Ago(Duration),
    /// Before this date (ms since the epoch, midnight UTC).
    Date { ms: i64, y: i32, m: u8, d: u8 },
}

/// How deep parentheses and NOTs may nest, counted together: `NOT (a OR NOT b)` is 3 deep. Far
/// more than anyone writes, and far less than what would exhaust a thread's stack: the parser
/// recurses once per level, and a parsed expression is at most `2 * MAX_DEPTH + 2` levels deep, so
/// evaluating, printing and resolving it recurse a bounded amount too.
pub const MAX_DEPTH: usize = 64;

/// A parse error at character `position` (0-based) of the expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at position {position}: {message}")]
pub struct SegmentError {
    pub position: usize,
    pub message: String,
}

impl SegmentError {
    /// The expression, then a caret under the position, then the message.
    pub fn render(&self, input: &str) -> String {
        format!("{input}\n{}^ {}", " ".repeat(self.position), self.message)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    LParen,
    RParen,
    Comma,
    Word(String),
}

fn tokenize(input: &str) -> Result<Vec<(usize, Token)>, SegmentError> {
    let chars: Vec<char> = input.chars().collect();
    let mut out = vec![];
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push((i, Token::LParen));
                i += 1
            }
            ')' => {
                out.push((i, Token::RParen));
                i += 1
            }
            ',' => {
                out.push((i, Token::Comma));
                i += 1
            }
            c if c.is_alphanumeric() || c == '_' => {
                let start = i;
                while chars.get(i).is_some_and(|&c| c.is_alphanumeric() || matches!(c, '_' | ':' | '.' | '-')) {
                    i += 1;
                }
                out.push((start, Token::Word(chars.get(start..i).unwrap_or_default().iter().collect())));
            }
            other => {
                return Err(SegmentError { position: i, message: format!("unexpected character {other:?}") });
            }
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    next: usize,
    end: usize,
    /// Parentheses and NOTs open around the next token.
    depth: usize,
}

fn is_keyword(w: &str, k: &str) -> bool {
    w.eq_ignore_ascii_case(k)
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.next).map(|t| &t.1)
    }

    fn position(&self) -> usize {
        self.tokens.get(self.next).map(|t| t.0).unwrap_or(self.end)
    }

    fn error<T>(&self, message: impl Into<String>) -> Result<T, SegmentError> {
        Err(SegmentError { position: self.position(), message: message.into() })
    }

    fn keyword(&mut self, k: &str) -> bool {
        if matches!(self.peek(), Some(Token::Word(w)) if is_keyword(w, k)) {
            self.next += 1;
            true
        } else {
            false
        }
    }

    /// Opens one more level of nesting for the parenthesis or NOT at the next token, or refuses it
    /// there if that would go deeper than [`MAX_DEPTH`].
    fn enter(&mut self) -> Result<(), SegmentError> {
        if self.depth >= MAX_DEPTH {
            return self.error(format!("nested too deep: at most {MAX_DEPTH} levels of parentheses and NOT"));
        }
        self.depth += 1;
        Ok(())
    }

    fn expect(&mut self, t: Token, what: &str) -> Result<(), SegmentError> {
        if self.peek() == Some(&t) {
            self.next += 1;
            Ok(())
        } else {
            self.error(format!("expected {what}"))
        }
    }

    fn or(&mut self) -> Result<Expr, SegmentError> {
        let mut parts = vec![self.and()?];
        while self.keyword("or") {
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { Expr::Or(parts) })
    }

    fn and(&mut self) -> Result<Expr, SegmentError> {
        let mut parts = vec![self.not()?];
        while self.keyword("and") {
            parts.push(self.not()?);
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { Expr::And(parts) })
    }

    fn not(&mut self) -> Result<Expr, SegmentError> {
        if matches!(self.peek(), Some(Token::Word(w)) if is_keyword(w, "not")) {
            self.enter()?;
            self.next += 1;
            let e = self.not()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(e)));
        }
        self.atom()
    }

    fn span(&mut self) -> Result<Duration, SegmentError> {
        match self.peek().cloned() {
            Some(Token::Word(w)) => {
                let d = parse_span(&w).or_else(|e| self.error(e))?;
                self.next += 1;
                Ok(d)
            }
            _ => self.error("expected a span like 3d or 12h"),
        }
    }

    fn tag(&mut self) -> Result<String, SegmentError> {
        match self.peek().cloned() {
            Some(Token::Word(w)) if is_tag(&w) => {
                self.next += 1;
                Ok(w)
            }
            Some(Token::Word(w)) => self.error(format!("{w:?} is not a tag (lower case letters, digits, _ : . -)")),
            _ => self.error("expected a tag"),
        }
    }

    fn atom(&mut self) -> Result<Expr, SegmentError> {
        let Some(token) = self.peek().cloned() else { return self.error("expected a tag, all, NOT or (") };
        match token {
            Token::LParen => {
                self.enter()?;
                self.next += 1;
                let e = self.or()?;
                self.expect(Token::RParen, "')'")?;
                self.depth -= 1;
                Ok(e)
            }
            Token::Word(w) if is_keyword(&w, "all") => {
                self.next += 1;
                Ok(Expr::All)
            }
            Token::Word(w) if is_keyword(&w, "tagged") => {
                self.next += 1;
                self.expect(Token::LParen, "'(' after tagged")?;
                let tag = self.tag()?;
                let within = if self.peek() == Some(&Token::Comma) {
                    self.next += 1;
                    if !self.keyword("within") {
                        return self.error("expected 'within'");
                    }
                    Some(self.span()?)
                } else {
                    None
                };
                self.expect(Token::RParen, "')'")?;
                Ok(Expr::Tagged { tag, within })
            }
            Token::Word(w) if is_keyword(&w, "friend_since") => {
                self.next += 1;
                self.expect(Token::LParen, "'(' after friend_since")?;
                let span = self.span()?;
                self.expect(Token::RParen, "')'")?;
                Ok(Expr::FriendSince(span))
            }
            Token::Word(w) if is_keyword(&w, "friend_before") => {
                self.next += 1;
                self.expect(Token::LParen, "'(' after friend_before")?;
                let before = match self.peek().cloned() {
                    Some(Token::Word(d)) if d.len() == 10 && d.as_bytes().get(4) == Some(&b'-') => {
                        let b = date(&d).or_else(|e| self.error(e))?;
                        self.next += 1;
                        b
                    }
                    _ => Before::Ago(self.span()?),
                };
                self.expect(Token::RParen, "')'")?;
                Ok(Expr::FriendBefore(before))
            }
            Token::Word(w) if ["and", "or"].iter().any(|k| is_keyword(&w, k)) => {
                self.error(format!("{} needs something before it", w.to_uppercase()))
            }
            Token::Word(_) => Ok(Expr::Tag(self.tag()?)),
            Token::RParen => self.error("unexpected ')'"),
            Token::Comma => self.error("unexpected ','"),
        }
    }
}

fn date(s: &str) -> Result<Before, String> {
    let bad = || format!("{s:?} is not a date like 2026-11-01");
    let d = jiff::civil::Date::strptime("%Y-%m-%d", s).map_err(|_| bad())?;
    let ms = d.to_zoned(jiff::tz::TimeZone::UTC).map_err(|_| bad())?.timestamp().as_millisecond();
    Ok(Before::Date { ms, y: d.year() as i32, m: d.month() as u8, d: d.day() as u8 })
}

impl Expr {
    pub fn parse(input: &str) -> Result<Expr, SegmentError> {
        let mut p = Parser { tokens: tokenize(input)?, next: 0, end: input.chars().count(), depth: 0 };
        if p.tokens.is_empty() {
            return p.error("empty expression: give a tag, or all");
        }
        let e = p.or()?;
        if p.next < p.tokens.len() {
            return p.error("expected AND, OR or the end");
        }
        Ok(e)
    }

    /// Whether evaluating needs every friend, not just those under some tag: `all`, a NOT or a
    /// friendship condition that no tag narrows.
    pub fn needs_scan(&self) -> bool {
        match self {
            Expr::Tag(_) | Expr::Tagged { .. } => false,
            Expr::All | Expr::Not(_) | Expr::FriendSince(_) | Expr::FriendBefore(_) => true,
            // One narrowed part narrows the whole conjunction.
            Expr::And(parts) => parts.iter().all(Expr::needs_scan),
            Expr::Or(parts) => parts.iter().any(Expr::needs_scan),
        }
    }

    /// Calls `f` with every tag the expression names.
    pub fn tags(&self, f: &mut impl FnMut(&str)) {
        match self {
            Expr::Tag(t) | Expr::Tagged { tag: t, .. } => f(t),
            Expr::Not(e) => e.tags(f),
            Expr::And(parts) | Expr::Or(parts) => parts.iter().for_each(|p| p.tags(f)),
            Expr::All | Expr::FriendSince(_) | Expr::FriendBefore(_) => {}
        }
    }

    /// Whether `friend` is in the segment at `now_ms`. Blocked friends never are.
    pub fn matches(&self, friend: &FriendFacts, now_ms: i64) -> bool {
        !friend.blocked && self.eval(friend, now_ms)
    }

    fn eval(&self, f: &FriendFacts, now: i64) -> bool {
        let live = |tag: &str| f.tags.get(tag).filter(|t| t.expires_at_ms.is_none_or(|e| e > now));
        match self {
            Expr::All => true,
            Expr::Tag(t) => live(t).is_some(),
            Expr::Tagged { tag, within } => {
                live(tag).is_some_and(|t| within.is_none_or(|w| now - t.tagged_at_ms <= w.as_millis() as i64))
            }
            Expr::FriendSince(span) => f.followed_at_ms.is_some_and(|at| now - at <= span.as_millis() as i64),
            Expr::FriendBefore(Before::Ago(span)) => {
                f.followed_at_ms.is_some_and(|at| now - at > span.as_millis() as i64)
            }
            Expr::FriendBefore(Before::Date { ms, .. }) => f.followed_at_ms.is_some_and(|at| at < *ms),
            Expr::Not(e) => !e.eval(f, now),
            Expr::And(parts) => parts.iter().all(|p| p.eval(f, now)),
            Expr::Or(parts) => parts.iter().any(|p| p.eval(f, now)),
        }
    }
}

/// Writes the expression back in canonical form (fully parenthesised where it matters).
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |f: &mut fmt::Formatter<'_>, parts: &[Expr], op: &str| {
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    write!(f, " {op} ")?;
                }
                match p {
                    Expr::And(_) | Expr::Or(_) => write!(f, "({p})")?,
                    _ => write!(f, "{p}")?,
                }
            }
            Ok(())
        };
        match self {
            Expr::All => write!(f, "all"),
            Expr::Tag(t) => write!(f, "{t}"),
            Expr::Tagged { tag, within: None } => write!(f, "tagged({tag})"),
            Expr::Tagged { tag, within: Some(w) } => write!(f, "tagged({tag}, within {})", format_span(*w)),
            Expr::FriendSince(s) => write!(f, "friend_since({})", format_span(*s)),
            Expr::FriendBefore(Before::Ago(s)) => write!(f, "friend_before({})", format_span(*s)),
            Expr::FriendBefore(Before::Date { y, m, d, .. }) => write!(f, "friend_before({y:04}-{m:02}-{d:02})"),
            Expr::Not(e) => match **e {
                Expr::And(_) | Expr::Or(_) => write!(f, "NOT ({e})"),
                _ => write!(f, "NOT {e}"),
            },
            Expr::And(parts) => join(f, parts, "AND"),
            Expr::Or(parts) => join(f, parts, "OR"),
        }
    }
}

/// What evaluation needs to know of one friend.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FriendFacts {
    pub blocked: bool,
    pub followed_at_ms: Option<i64>,
    pub tags: HashMap<String, TagFacts>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TagFacts {
    pub tagged_at_ms: i64,
    pub expires_at_ms: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;
    const NOW: i64 = 1_795_305_600_000;

    fn friend(tags: &[(&str, i64, Option<i64>)], followed_days_ago: i64) -> FriendFacts {
        FriendFacts {
            blocked: false,
            followed_at_ms: Some(NOW - followed_days_ago * DAY),
            tags: tags
                .iter()
                .map(|(t, ago, exp)| (t.to_string(), TagFacts { tagged_at_ms: NOW - ago * DAY, expires_at_ms: *exp }))
                .collect(),
        }
    }

    fn is(expr: &str, f: &FriendFacts) -> bool {
        Expr::parse(expr).unwrap_or_else(|e| panic!("{}", e.render(expr))).matches(f, NOW)
    }

    #[test]
    fn precedence_is_not_then_and_then_or() {
        let e = Expr::parse("a OR b AND NOT c").unwrap();
        assert_eq!(e.to_string(), "a OR (b AND NOT c)");
        let e = Expr::parse("(a or b) and not (c or d)").unwrap();
        assert_eq!(e.to_string(), "(a OR b) AND NOT (c OR d)");
        assert_eq!(Expr::parse(&e.to_string()).unwrap(), e, "canonical form parses back");
    }

    #[test]
    fn the_seed_segments_select_the_right_friends() {
        let dessert_lover = friend(&[("dessert", 10, None)], 100);
        let vip_dessert = friend(&[("dessert", 10, None), ("vip", 1, None)], 100);
        assert!(is("dessert AND NOT vip", &dessert_lover));
        assert!(!is("dessert AND NOT vip", &vip_dessert));

        let abandoner = friend(&[("cart:open", 2, Some(NOW + 5 * DAY))], 30);
        let old_cart = friend(&[("cart:open", 5, Some(NOW + 2 * DAY))], 30);
        let buyer = friend(&[("cart:open", 1, Some(NOW + 6 * DAY)), ("buyer", 1, None)], 30);
        let expired = friend(&[("cart:open", 2, Some(NOW - 1))], 30);
        let expr = "tagged(cart:open, within 3d) AND NOT buyer";
        assert_eq!(
            [&abandoner, &old_cart, &buyer, &expired].map(|f| is(expr, f)),
            [true, false, false, false],
            "expired tags never count, even before TTL deletes them"
        );
    }

    #[test]
    fn friendship_conditions_and_blocked_friends() {
        let new = friend(&[], 3);
        let old = friend(&[], 400);
        assert!(is("friend_since(30d)", &new) && !is("friend_since(30d)", &old));
        assert!(is("friend_before(365d)", &old) && !is("friend_before(365d)", &new));
        assert!(is("friend_before(2026-01-01)", &old) && !is("friend_before(2026-01-01)", &new));
        let mut blocked = friend(&[("dessert", 1, None)], 10);
        blocked.blocked = true;
        assert!(!is("all", &blocked) && !is("dessert", &blocked) && !is("NOT vip", &blocked));
    }

    #[test]
    fn errors_point_at_the_position() {
        let cases = [
            ("dessert AND", 11, "expected a tag"),
            ("dessert AND AND vip", 12, "AND needs something before it"),
            ("(dessert OR vip", 15, "expected ')'"),
            ("tagged(cart:open, within soon)", 25, "duration"),
            ("dessert vip", 8, "expected AND, OR or the end"),
            ("Dessert", 0, "not a tag"),
            ("dessert & vip", 8, "unexpected character '&'"),
            ("friend_before(2026-13-01)", 14, "not a date"),
            ("", 0, "empty expression"),
        ];
        for (input, position, message) in cases {
            let e = Expr::parse(input).expect_err(input);
            assert_eq!(e.position, position, "{input}: {e}");
            assert!(e.message.contains(message), "{input}: {e}");
        }
        assert_eq!(Expr::parse("bought:スイーツ").unwrap(), Expr::Tag("bought:スイーツ".into()), "tags of any script");
        let rendered = Expr::parse("dessert AND AND vip").unwrap_err().render("dessert AND AND vip");
        assert_eq!(rendered, "dessert AND AND vip\n            ^ AND needs something before it");
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_refused_where_it_goes_too_deep() {
        let parens = |n: usize| format!("{}dessert{}", "(".repeat(n), ")".repeat(n));
        let nots = |n: usize| format!("{}dessert", "NOT ".repeat(n));
        assert_eq!(Expr::parse(&parens(MAX_DEPTH)).unwrap(), Expr::Tag("dessert".into()));
        let deepest = Expr::parse(&nots(MAX_DEPTH)).unwrap();
        assert_eq!(Expr::parse(&deepest.to_string()).unwrap(), deepest, "prints and parses back");
        assert!(deepest.matches(&friend(&[("dessert", 1, None)], 10), NOW), "an even number of NOTs");
        let mixed = format!("{}vip{}", "NOT (".repeat(MAX_DEPTH / 2), ")".repeat(MAX_DEPTH / 2));
        assert!(Expr::parse(&mixed).is_ok(), "NOT and parentheses count together, up to the limit");
        let siblings = format!("{} AND {}", parens(MAX_DEPTH), nots(MAX_DEPTH));
        assert!(Expr::parse(&siblings).is_ok(), "depth is counted along one path, not added up");

        // (input, position of the parenthesis or NOT one level too deep)
        let cases = [
            (parens(5_000), MAX_DEPTH),
            (nots(5_000), 4 * MAX_DEPTH),
            (parens(MAX_DEPTH + 1), MAX_DEPTH),
            (format!("NOT {}", parens(MAX_DEPTH)), 4 + MAX_DEPTH - 1),
            (format!("vip AND {}", nots(MAX_DEPTH + 1)), "vip AND ".len() + 4 * MAX_DEPTH),
        ];
        for (input, position) in cases {
            let e = Expr::parse(&input).expect_err("too deep");
            assert_eq!(e.position, position, "{e}");
            assert!(e.message.contains("nested too deep"), "{e}");
        }
    }

    #[test]
    fn only_all_nots_and_unnarrowed_friendship_conditions_need_a_scan() {
        let scan = |e: &str| Expr::parse(e).unwrap().needs_scan();
        assert!(!scan("dessert"));
        assert!(!scan("dessert AND NOT vip"));
        assert!(!scan("tagged(cart:open, within 3d) AND NOT buyer"));
        assert!(!scan("friend_since(30d) AND dessert"));
        assert!(scan("all"));
        assert!(scan("NOT vip"));
        assert!(scan("dessert OR friend_since(7d)"));
    }
}
