//! The conformance report: for each rule pass / FAIL / not exercised, with
//! the failures' connection, frame, bytes and spec section; text for people,
//! JSON for machines.

use std::fmt::Write as _;

use serde::Serialize;

use super::root_cause::{RootCause, SymptomGroups};
use super::rules::Rule;

/// Failures kept per rule; the rest are only counted, so that a badly
/// broken implementation gives a readable report.
const MAX_FAILURES_SHOWN: usize = 10;
/// Offending bytes shown per failure.
const MAX_BYTES_SHOWN: usize = 48;
/// Characters of an offending log record shown per failure.
const MAX_RECORD_CHARS: usize = 160;

/// Outcome of one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleStatus {
    Pass,
    Fail,
    NotExercised,
}

/// One observed breach of a rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// Connection number, 1-based in the order connections were made; none
    /// for a finding about the log as a whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection: Option<usize>,
    /// For `conform server`: the vector or probe that made the connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe: Option<String>,
    /// Frame number on that connection, 1-based, when one frame is to blame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame: Option<usize>,
    /// The offending bytes, hexadecimal, space separated (shortened).
    pub bytes: String,
    /// What happened, in words.
    pub detail: String,
    /// The behaviour seen, worded the same wherever it is seen, so that
    /// failures with one cause can be counted together.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symptom: Option<String>,
    /// For a log record at fault: its line in the log file, 1-based.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// For a log record at fault: the record itself, escaped (see
    /// [`escaped`]) and shortened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
}

/// The outcome of one rule over the whole run.
#[derive(Debug, Clone, Serialize)]
pub struct RuleResult {
    pub rule: &'static str,
    /// `spec/protocol.md#section`.
    pub spec: String,
    pub requirement: &'static str,
    pub status: RuleStatus,
    /// How many times the rule was checked.
    pub checks: usize,
    /// How many checks failed (more than `failures` lists, when many did).
    pub failed: usize,
    pub failures: Vec<Failure>,
    /// Checks that were planned but say nothing: not run, or cut off,
    /// because the server stopped (see the report's root causes).
    #[serde(skip_serializing_if = "is_zero")]
    pub void: usize,
    /// Why the rule was not exercised (always given then), or a remark on
    /// how it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A fault scenario of `conform client`: what the checking server did, what
/// the client did in response, and which rule that meets or breaks.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub scenario: String,
    pub observations: Vec<String>,
}

/// Counts for the last line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RuleCounts {
    pub pass: usize,
    pub fail: usize,
    pub not_exercised: usize,
}

/// A whole report.
#[derive(Debug, Clone, Serialize)]
pub struct ConformReport {
    /// `client` or `server`.
    pub mode: &'static str,
    /// The command judged, or the address of the server judged.
    pub target: String,
    /// What most likely explains the failures, most important first; the
    /// text report opens with them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub root_causes: Vec<RootCause>,
    pub rules: Vec<RuleResult>,
    /// What else was seen, one line each (connections, command status).
    pub notes: Vec<String>,
    pub scenarios: Vec<ScenarioResult>,
    /// `conform client`: the byte transcript of every connection (JSON only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub connections: Vec<TranscriptHex>,
    pub summary: RuleCounts,
}

/// What a client sent on one connection and what it got back.
#[derive(Debug, Clone, Serialize)]
pub struct TranscriptHex {
    pub connection: usize,
    /// Client bytes, hex (shortened after 4096 bytes).
    pub sent: String,
    /// Reply bytes, hex.
    pub replies: String,
}

impl ConformReport {
    /// True when no rule failed and nothing voided the run: the exit
    /// status is 0 then.
    pub fn passed(&self) -> bool {
        self.summary.fail == 0 && !self.root_causes.iter().any(RootCause::voids_run)
    }

    /// The result of one rule, by name.
    pub fn rule(&self, name: &str) -> Option<&RuleResult> {
        self.rules.iter().find(|r| r.rule == name)
    }

    /// Names of the rules that failed.
    pub fn failed_rules(&self) -> Vec<&'static str> {
        self.rules
            .iter()
            .filter(|r| r.status == RuleStatus::Fail)
            .map(|r| r.rule)
            .collect()
    }

    pub fn to_json(&self) -> String {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The readable report; its last line has the counts.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "msglog conform {}: {}", self.mode, self.target);
        out.push('\n');
        if !self.root_causes.is_empty() {
            let _ = writeln!(out, "likely root causes:");
            for c in &self.root_causes {
                let mark = if c.voids_run() { "!" } else { "-" };
                let _ = writeln!(out, "  {mark} {}", c.sentence());
            }
            out.push('\n');
        }
        let width = self.rules.iter().map(|r| r.rule.len()).max().unwrap_or(0);
        for r in &self.rules {
            let mut status = match r.status {
                RuleStatus::Pass => format!("pass ({})", checks(r.checks)),
                RuleStatus::Fail => format!("FAIL ({} of {})", r.failed, checks(r.checks)),
                RuleStatus::NotExercised => "not exercised".to_string(),
            };
            if r.void > 0 {
                let _ = write!(status, " [{} void]", r.void);
            }
            let _ = writeln!(
                out,
                "  {:<width$}  {:<26}  {}",
                r.rule,
                status,
                r.spec,
                width = width
            );
            for f in &r.failures {
                let mut place = match (f.connection, &f.probe) {
                    (Some(c), Some(p)) => format!("connection {c} ({p})"),
                    (Some(c), None) => format!("connection {c}"),
                    (None, Some(p)) => p.clone(),
                    (None, None) => String::new(),
                };
                if let Some(n) = f.frame {
                    let _ = write!(place, ", frame {n}");
                }
                if let Some(n) = f.line {
                    let _ = write!(place, ", line {n}");
                }
                let _ = writeln!(out, "      {place}: {}", f.detail);
                if let Some(record) = &f.record {
                    let _ = writeln!(out, "        record: {record}");
                }
                if !f.bytes.is_empty() {
                    let _ = writeln!(out, "        bytes: {}", f.bytes);
                }
            }
            if r.failed > r.failures.len() {
                let _ = writeln!(out, "      ... and {} more", r.failed - r.failures.len());
            }
            if let (RuleStatus::NotExercised, Some(note)) = (r.status, &r.note) {
                let _ = writeln!(out, "      ({note})");
            }
        }
        for s in &self.scenarios {
            let _ = writeln!(out, "\nscenario {}:", s.scenario);
            for o in &s.observations {
                let _ = writeln!(out, "  - {o}");
            }
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for n in &self.notes {
                let _ = writeln!(out, "{n}");
            }
        }
        let s = self.summary;
        let _ = write!(
            out,
            "\n{} rules: {} pass, {} FAIL, {} not exercised",
            self.rules.len(),
            s.pass,
            s.fail,
            s.not_exercised
        );
        let void: usize = self.rules.iter().map(|r| r.void).sum();
        if void > 0 {
            let _ = write!(
                out,
                "; {void} check{} void",
                if void == 1 { "" } else { "s" }
            );
        }
        if self.root_causes.iter().any(RootCause::voids_run) {
            let _ = write!(out, "; the run is void: see the first root cause");
        }
        out.push('\n');
        out
    }
}

fn checks(n: usize) -> String {
    if n == 1 {
        "1 check".into()
    } else {
        format!("{n} checks")
    }
}

/// Collects checks and failures per rule while a run goes on.
#[derive(Debug, Clone)]
pub struct Tally {
    entries: Vec<Entry>,
    symptoms: SymptomGroups,
    leading_causes: Vec<RootCause>,
}

#[derive(Debug, Clone)]
struct Entry {
    rule: Rule,
    checks: usize,
    failed: usize,
    failures: Vec<Failure>,
    void: usize,
    note: Option<String>,
}

impl Entry {
    fn new(rule: Rule) -> Self {
        Entry {
            rule,
            checks: 0,
            failed: 0,
            failures: Vec::new(),
            void: 0,
            note: None,
        }
    }
}

/// The reason given for a rule nothing exercised when its check did not
/// say why: better a plain reason than none.
const NOTHING_EXERCISED_IT: &str = "nothing in this run exercised it";

impl Tally {
    /// A tally over `rules`, in the order they will be reported.
    pub fn new(rules: &[Rule]) -> Self {
        Tally {
            entries: rules.iter().map(|r| Entry::new(*r)).collect(),
            symptoms: SymptomGroups::default(),
            leading_causes: Vec::new(),
        }
    }

    fn entry(&mut self, rule: Rule) -> &mut Entry {
        let i = match self.entries.iter().position(|e| e.rule.name == rule.name) {
            Some(i) => i,
            None => {
                self.entries.push(Entry::new(rule));
                self.entries.len() - 1
            }
        };
        &mut self.entries[i]
    }

    /// One check of `rule` that held.
    pub fn pass(&mut self, rule: Rule) {
        self.entry(rule).checks += 1;
    }

    /// `n` checks of `rule` that held.
    pub fn pass_n(&mut self, rule: Rule, n: usize) {
        self.entry(rule).checks += n;
    }

    /// One check of `rule` that failed.
    pub fn fail(&mut self, rule: Rule, failure: Failure) {
        if let Some(symptom) = &failure.symptom {
            self.symptoms.add(rule.name, symptom);
        }
        let e = self.entry(rule);
        e.checks += 1;
        e.failed += 1;
        if e.failures.len() < MAX_FAILURES_SHOWN {
            e.failures.push(failure);
        }
    }

    /// One check of `rule` that was planned but is void (see
    /// [`Tally::root_cause`] for why).
    pub fn void(&mut self, rule: Rule) {
        self.entry(rule).void += 1;
    }

    /// Says why `rule` may be left unexercised.
    pub fn note(&mut self, rule: Rule, note: impl Into<String>) {
        self.entry(rule).note = Some(note.into());
    }

    /// Says why `rule` was not exercised, unless it was, or its checks
    /// were void, or a reason is already given.
    pub fn note_if_unexercised(&mut self, rule: Rule, note: impl Into<String>) {
        let e = self.entry(rule);
        if e.checks == 0 && e.void == 0 && e.note.is_none() {
            e.note = Some(note.into());
        }
    }

    /// A root cause the report opens with, before the shared symptoms.
    pub fn root_cause(&mut self, cause: RootCause) {
        self.leading_causes.push(cause);
    }

    /// The finished report.
    pub fn into_report(
        self,
        mode: &'static str,
        target: String,
        notes: Vec<String>,
        scenarios: Vec<ScenarioResult>,
    ) -> ConformReport {
        let mut summary = RuleCounts::default();
        let order: Vec<&'static str> = self.entries.iter().map(|e| e.rule.name).collect();
        let mut root_causes = self.leading_causes;
        root_causes.extend(self.symptoms.shared(&order));
        let rules = self
            .entries
            .into_iter()
            .map(|e| {
                let Entry {
                    rule,
                    checks,
                    failed,
                    failures,
                    void,
                    note,
                } = e;
                let status = if failed > 0 {
                    summary.fail += 1;
                    RuleStatus::Fail
                } else if checks > 0 {
                    summary.pass += 1;
                    RuleStatus::Pass
                } else {
                    summary.not_exercised += 1;
                    RuleStatus::NotExercised
                };
                let note = match (status, note) {
                    (RuleStatus::NotExercised, None) if void > 0 => Some(format!(
                        "all {void} of its checks were void: see the root causes at the top"
                    )),
                    (RuleStatus::NotExercised, None) => Some(NOTHING_EXERCISED_IT.to_string()),
                    // A rule judged on the checks that ran before a stop:
                    // the rest is void, and its status says less than it seems.
                    (_, None) if void > 0 => Some(format!(
                        "{void} of its checks were void: see the root causes at the top"
                    )),
                    (_, note) => note,
                };
                RuleResult {
                    rule: rule.name,
                    spec: rule.citation(),
                    requirement: rule.requirement,
                    status,
                    checks,
                    failed,
                    failures,
                    void,
                    note,
                }
            })
            .collect();
        ConformReport {
            mode,
            target,
            root_causes,
            rules,
            notes,
            scenarios,
            connections: Vec::new(),
            summary,
        }
    }
}

/// Bytes as space-separated lower-case hex, shortened after
/// `MAX_BYTES_SHOWN` bytes with the total length.
pub fn hex(bytes: &[u8]) -> String {
    hex_up_to(bytes, MAX_BYTES_SHOWN)
}

/// Bytes as hex, shortened after `max` bytes.
pub fn hex_up_to(bytes: &[u8], max: usize) -> String {
    let shown = &bytes[..bytes.len().min(max)];
    let mut out = String::with_capacity(shown.len() * 3 + 24);
    for (i, b) in shown.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let _ = write!(out, "{b:02x}");
    }
    if bytes.len() > shown.len() {
        let _ = write!(out, " ... ({} bytes)", bytes.len());
    }
    out
}

/// Bytes as text a person can read and copy: valid UTF-8 as it is, with
/// control and invisible characters, quotes and backslashes escaped the way
/// Rust writes them (`\r`, `\u{85}`), every other byte as `\xNN`; in
/// double quotes, shortened after `MAX_RECORD_CHARS` characters.
pub fn escaped(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    let mut pieces = bytes.utf8_chunks().flat_map(|chunk| {
        let text = chunk.valid().chars().map(|c| c.escape_debug().to_string());
        let raw = chunk.invalid().iter().map(|b| format!("\\x{b:02x}"));
        text.chain(raw)
    });
    for piece in pieces.by_ref().take(MAX_RECORD_CHARS) {
        out.push_str(&piece);
    }
    out.push('"');
    if pieces.next().is_some() {
        let _ = write!(out, " ... ({} bytes)", bytes.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::rules::{CLIENT_RULES, LENGTH_NOT_BYTES, SENT_AFTER_REJECT};
    use super::*;

    #[test]
    fn status_follows_checks_and_failures() {
        let mut t = Tally::new(&CLIENT_RULES);
        t.pass(SENT_AFTER_REJECT);
        t.fail(
            LENGTH_NOT_BYTES,
            Failure {
                connection: Some(1),
                probe: None,
                frame: Some(3),
                bytes: hex(&[3, 1, 0, 0xc3]),
                detail: "length counts characters".into(),
                ..Failure::default()
            },
        );
        let r = t.into_report("client", "x".into(), vec![], vec![]);
        assert_eq!(r.rule("SentAfterReject").unwrap().status, RuleStatus::Pass);
        assert_eq!(r.rule("LengthNotBytes").unwrap().status, RuleStatus::Fail);
        assert_eq!(
            r.rule("OutOfOrder").unwrap().status,
            RuleStatus::NotExercised
        );
        assert_eq!(
            r.summary,
            RuleCounts {
                pass: 1,
                fail: 1,
                not_exercised: 5
            }
        );
        assert!(!r.passed());
        let text = r.to_text();
        assert!(text.contains("connection 1, frame 3: length counts characters"));
        assert!(text.contains("bytes: 03 01 00 c3"));
        assert!(text
            .trim_end()
            .ends_with("7 rules: 1 pass, 1 FAIL, 5 not exercised"));
        assert!(
            r.rule("OutOfOrder").unwrap().note.is_some(),
            "a rule not exercised always says why"
        );
        let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(json["rules"][2]["status"], "fail");
        assert_eq!(json["rules"][2]["failures"][0]["frame"], 3);
    }

    /// A rule that passed the checks run before a stop says that the rest
    /// was void; a rule with every check void says so too.
    #[test]
    fn a_partly_void_rule_says_so() {
        let mut t = Tally::new(&CLIENT_RULES);
        t.pass(SENT_AFTER_REJECT);
        t.void(SENT_AFTER_REJECT);
        t.void(LENGTH_NOT_BYTES);
        let r = t.into_report("client", "x".into(), vec![], vec![]);
        let passed = r.rule("SentAfterReject").unwrap();
        assert_eq!(passed.status, RuleStatus::Pass);
        assert!(passed
            .note
            .as_deref()
            .unwrap()
            .starts_with("1 of its checks were void"));
        let void = r.rule("LengthNotBytes").unwrap();
        assert_eq!(void.status, RuleStatus::NotExercised);
        assert!(void
            .note
            .as_deref()
            .unwrap()
            .starts_with("all 1 of its checks were void"));
    }

    #[test]
    fn the_text_opens_with_the_root_causes() {
        let mut t = Tally::new(&CLIENT_RULES);
        let stop = RootCause::ServerStopped {
            explanation: "the server stopped accepting connections".into(),
            void_checks: 3,
        };
        t.root_cause(stop);
        t.void(LENGTH_NOT_BYTES);
        for _ in 0..3 {
            t.fail(
                SENT_AFTER_REJECT,
                Failure {
                    detail: "sent more".into(),
                    symptom: Some("the client sends after 0xFF".into()),
                    ..Failure::default()
                },
            );
        }
        let r = t.into_report("client", "x".into(), vec![], vec![]);
        assert!(!r.passed());
        let text = r.to_text();
        let body: Vec<&str> = text.lines().skip(2).take(3).collect();
        assert_eq!(
            body,
            [
                "likely root causes:",
                "  ! the server stopped accepting connections",
                "  - 3 failures of rule SentAfterReject share one symptom: the client sends after 0xFF"
            ]
        );
        assert!(
            text.contains("LengthNotBytes   not exercised [1 void]"),
            "{text}"
        );
        assert!(text.contains("(all 1 of its checks were void"), "{text}");
        assert!(text
            .trim_end()
            .ends_with("1 check void; the run is void: see the first root cause"));
        let unexercised_without_reason = r
            .rules
            .iter()
            .filter(|r| r.status == RuleStatus::NotExercised && r.note.is_none())
            .count();
        assert_eq!(unexercised_without_reason, 0);
    }

    #[test]
    fn records_are_shown_escaped_and_shortened() {
        assert_eq!(escaped(b"[a]: b\r\n"), r#""[a]: b\r\n""#);
        assert_eq!(escaped("é\u{85}\"".as_bytes()), r#""é\u{85}\"""#);
        assert_eq!(escaped(&[b'x', 0xff, b'y']), r#""x\xffy""#);
        let long = escaped(&[b'z'; 500]);
        assert!(long.ends_with("\" ... (500 bytes)"), "{long}");
        assert_eq!(long.matches('z').count(), MAX_RECORD_CHARS);
        assert!(!escaped(&[b'z'; MAX_RECORD_CHARS]).contains("..."));
    }

    #[test]
    fn hex_is_shortened() {
        assert_eq!(hex(&[0, 0xff]), "00 ff");
        let long = hex(&[7; 100]);
        assert!(long.ends_with("... (100 bytes)"));
    }
}
