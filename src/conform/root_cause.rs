//! Likely root causes: one broken behaviour (a CLOSE answered with 0xFF, a
//! server that gives up on split frames, a server that crashed) fails many
//! checks under many rules. The report opens with these, so that a reader
//! sees the one thing to fix before the per-rule list. Pure: it only counts.

use std::collections::HashMap;

use serde::Serialize;

/// Symptoms shown at most; the rest are summed up in one line.
const MAX_SHARED_SYMPTOMS: usize = 5;
/// A symptom is a likely root cause when it fails at least this many
/// checks of one rule...
const MIN_FAILURES_OF_ONE_RULE: usize = 3;
/// ...or checks of at least this many rules.
const MIN_RULES: usize = 2;

/// Something that explains failures, or voids the check, at its root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum RootCause {
    /// The server stopped accepting connections during the check: what
    /// came after says nothing about the rules, and the run does not pass.
    ServerStopped {
        /// Where and how it stopped, and what that voided.
        explanation: String,
        /// Checks not run, or cut off, because of it.
        void_checks: usize,
    },
    /// Failures that show one and the same behaviour.
    SharedSymptom {
        /// The behaviour, in words that do not depend on the check.
        symptom: String,
        failures: usize,
        /// The rules it failed, in report order.
        rules: Vec<&'static str>,
    },
    /// Further symptoms, each below the bar or beyond the first few.
    OtherSymptoms { symptoms: usize, failures: usize },
}

impl RootCause {
    /// True when the cause makes the check as a whole fail, whatever the
    /// rules say.
    pub fn voids_run(&self) -> bool {
        matches!(self, RootCause::ServerStopped { .. })
    }

    /// The line of the text report.
    pub fn sentence(&self) -> String {
        match self {
            RootCause::ServerStopped { explanation, .. } => explanation.clone(),
            RootCause::SharedSymptom {
                symptom,
                failures,
                rules,
            } => {
                let across = match rules.as_slice() {
                    [one] => format!("of rule {one}"),
                    many => format!("across {} rules ({})", many.len(), many.join(", ")),
                };
                let share = if *failures == 1 {
                    "has the symptom"
                } else {
                    "share one symptom"
                };
                format!(
                    "{failures} failure{} {across} {share}: {symptom}",
                    plural(*failures)
                )
            }
            RootCause::OtherSymptoms { symptoms, failures } => format!(
                "{failures} other failure{} show {symptoms} other symptom{}",
                plural(*failures),
                plural(*symptoms)
            ),
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[derive(Debug, Clone)]
struct Group {
    symptom: String,
    failures: usize,
    rules: Vec<&'static str>,
}

/// Counts failures by symptom as they are tallied: every failure, also
/// those the report does not list one by one.
#[derive(Debug, Clone, Default)]
pub struct SymptomGroups {
    groups: Vec<Group>,
    by_symptom: HashMap<String, usize>,
}

impl SymptomGroups {
    /// One failure of `rule` that showed `symptom`.
    pub fn add(&mut self, rule: &'static str, symptom: &str) {
        let i = match self.by_symptom.get(symptom) {
            Some(&i) => i,
            None => {
                self.groups.push(Group {
                    symptom: symptom.to_string(),
                    failures: 0,
                    rules: Vec::new(),
                });
                self.by_symptom
                    .insert(symptom.to_string(), self.groups.len() - 1);
                self.groups.len() - 1
            }
        };
        let g = &mut self.groups[i];
        g.failures += 1;
        if !g.rules.contains(&rule) {
            g.rules.push(rule);
        }
    }

    /// The symptoms worth a line of their own, most failures first (ties in
    /// the order they were first seen), then one line for the rest when
    /// any of them is shown.
    pub fn shared(&self, rule_order: &[&'static str]) -> Vec<RootCause> {
        let mut big: Vec<&Group> = self
            .groups
            .iter()
            .filter(|g| g.rules.len() >= MIN_RULES || g.failures >= MIN_FAILURES_OF_ONE_RULE)
            .collect();
        // A stable sort keeps first-seen order among equals.
        big.sort_by_key(|g| std::cmp::Reverse(g.failures));
        big.truncate(MAX_SHARED_SYMPTOMS);
        if big.is_empty() {
            return Vec::new();
        }
        let position = |r: &&'static str| rule_order.iter().position(|o| o == r);
        let mut out: Vec<RootCause> = big
            .iter()
            .map(|g| {
                let mut rules = g.rules.clone();
                rules.sort_by_key(position);
                RootCause::SharedSymptom {
                    symptom: g.symptom.clone(),
                    failures: g.failures,
                    rules,
                }
            })
            .collect();
        let shown: usize = big.iter().map(|g| g.failures).sum();
        let total: usize = self.groups.iter().map(|g| g.failures).sum();
        if total > shown {
            out.push(RootCause::OtherSymptoms {
                symptoms: self.groups.len() - big.len(),
                failures: total - shown,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER: [&str; 4] = ["UnknownTag", "states", "close", "frame"];

    #[test]
    fn one_behaviour_across_rules_is_one_root_cause() {
        let mut groups = SymptomGroups::default();
        let close = "CLOSE (0x04) answered with 0xFF instead of 0x00";
        for rule in ["close", "states", "close", "UnknownTag", "close"] {
            groups.add(rule, close);
        }
        groups.add("frame", "a lone failure");
        let causes = groups.shared(&ORDER);
        assert_eq!(
            causes[0],
            RootCause::SharedSymptom {
                symptom: close.into(),
                failures: 5,
                rules: vec!["UnknownTag", "states", "close"],
            }
        );
        assert_eq!(
            causes[0].sentence(),
            "5 failures across 3 rules (UnknownTag, states, close) share one symptom: CLOSE (0x04) answered with 0xFF instead of 0x00"
        );
        assert_eq!(
            causes[1],
            RootCause::OtherSymptoms {
                symptoms: 1,
                failures: 1
            }
        );
        assert!(!causes[0].voids_run());
    }

    #[test]
    fn many_failures_of_one_rule_count_and_scattered_ones_do_not() {
        let mut groups = SymptomGroups::default();
        groups.add("frame", "x");
        groups.add("close", "y");
        assert!(groups.shared(&ORDER).is_empty(), "nothing is shared");
        for _ in 0..3 {
            groups.add("frame", "NAME (0x01) sent in pieces got no reply");
        }
        let causes = groups.shared(&ORDER);
        assert_eq!(
            causes[0].sentence(),
            "3 failures of rule frame share one symptom: NAME (0x01) sent in pieces got no reply"
        );
        assert_eq!(
            causes[1].sentence(),
            "2 other failures show 2 other symptoms"
        );
    }

    #[test]
    fn the_biggest_come_first_and_only_a_few() {
        let mut groups = SymptomGroups::default();
        for i in 0..8 {
            for _ in 0..(3 + i) {
                groups.add("frame", &format!("symptom {i}"));
            }
        }
        let causes = groups.shared(&ORDER);
        assert_eq!(causes.len(), MAX_SHARED_SYMPTOMS + 1);
        assert!(
            matches!(&causes[0], RootCause::SharedSymptom { symptom, failures: 10, .. } if symptom == "symptom 7")
        );
        assert_eq!(
            causes[MAX_SHARED_SYMPTOMS],
            RootCause::OtherSymptoms {
                symptoms: 3,
                failures: 3 + 4 + 5
            }
        );
    }
}
