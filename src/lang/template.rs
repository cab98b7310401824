//! Load-time checks of a rule's `message` template (rule-language.md 4: a
//! template error is a load error where it can be found at load). Beyond
//! the syntax, what the template will look up is known from its compiled
//! instructions: every filter, test and function it names, and every
//! top-level name it reads. Each must exist — a builtin of the template
//! engine, a name the alert context provides for this kind of rule, or a
//! name the template itself defines (`set`, `for`, `macro`) — whether or
//! not the branch that uses it ever runs.

use std::collections::BTreeSet;

use minijinja::machinery::{Instruction, Instructions, get_compiled_template};
use minijinja::{Environment, ErrorKind};

/// The names every alert's template context has (rule-language.md 4).
pub const CONTEXT: [&str; 7] = [
    "rule", "severity", "status", "key", "time", "values", "window",
];

/// Problems of `source` as a template whose context holds [`CONTEXT`] and
/// `extra` (`event` for a filter rule, step names for a sequence), each a
/// message; a syntax error is the only problem when there is one.
pub fn problems(env: &Environment, source: &str, extra: &[&str]) -> Vec<String> {
    let tmpl = match env.template_from_str(source) {
        Ok(t) => t,
        Err(e) => return vec![format!("invalid message template: {e}")],
    };
    let compiled = get_compiled_template(&tmpl);
    let mut filters = BTreeSet::new();
    let mut tests = BTreeSet::new();
    let mut calls = BTreeSet::new();
    let mut scan = |ins: &Instructions| {
        for i in 0.. {
            match ins.get(i) {
                None => break,
                Some(Instruction::ApplyFilter(name, ..)) => {
                    filters.insert(name.to_string());
                }
                Some(Instruction::PerformTest(name, ..)) => {
                    tests.insert(name.to_string());
                }
                Some(Instruction::CallFunction(name, ..)) => {
                    calls.insert(name.to_string());
                }
                Some(_) => {}
            }
        }
    };
    scan(&compiled.instructions);
    for block in compiled.blocks.values() {
        scan(block);
    }
    let globals: BTreeSet<&str> = env.globals().map(|(name, _)| name).collect();
    let provided =
        |name: &str| globals.contains(name) || CONTEXT.contains(&name) || extra.contains(&name);
    // Names read but not defined by the template itself.
    let undeclared = tmpl.undeclared_variables(false);
    let mut out = Vec::new();
    for f in &filters {
        if unknown(
            env,
            &format!("{{{{ none | {f} }}}}"),
            ErrorKind::UnknownFilter,
        ) {
            out.push(format!("unknown filter `{f}` in the message template"));
        }
    }
    for t in &tests {
        if unknown(
            env,
            &format!("{{{{ none is {t} }}}}"),
            ErrorKind::UnknownTest,
        ) {
            out.push(format!("unknown test `{t}` in the message template"));
        }
    }
    for c in &calls {
        if undeclared.contains(c) && !provided(c) {
            out.push(format!("unknown function `{c}` in the message template"));
        }
    }
    let mut names: Vec<&str> = CONTEXT.to_vec();
    names.extend(extra);
    for v in &undeclared {
        if !calls.contains(v) && !provided(v) {
            out.push(format!(
                "unknown name `{v}` in the message template (it can use {})",
                names
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    out
}

/// Whether rendering `probe` fails because the filter or test it applies
/// does not exist (any other failure — a missing argument — means it does).
fn unknown(env: &Environment, probe: &str, kind: ErrorKind) -> bool {
    env.render_str(probe, ()).is_err_and(|e| e.kind() == kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(source: &str, extra: &[&str]) -> Vec<String> {
        problems(&Environment::new(), source, extra)
    }

    #[test]
    fn names_filters_tests_and_functions_must_exist() {
        assert!(
            check(
                "{{ key.user }} at {{ time }}: {{ values['count()'] | round }}",
                &[]
            )
            .is_empty()
        );
        assert!(check("{{ event.ip | upper }}", &["event"]).is_empty());
        assert!(
            check(
                "{% for e in fail %}{{ e.ip }}{% endfor %}{{ ok.user }}",
                &["fail", "ok"]
            )
            .is_empty()
        );
        assert!(
            check(
                "{% set n = 3 %}{% for i in range(n) %}{{ loop.index }}{% endfor %}",
                &[]
            )
            .is_empty()
        );
        assert!(check("{% macro m(x) %}{{ x }}{% endmacro %}{{ m(rule) }}", &[]).is_empty());
        assert!(
            check(
                "{% if key is defined and status is string %}x{% endif %}",
                &[]
            )
            .is_empty()
        );

        let p = check("{{ event.ip | uppercase }}", &["event"]);
        assert_eq!(p, ["unknown filter `uppercase` in the message template"]);
        // Found even in a branch that never runs.
        let p = check("{% if false %}{{ nosuchfn() }}{% endif %}", &[]);
        assert_eq!(p, ["unknown function `nosuchfn` in the message template"]);
        let p = check("{% if rule is nosuchtest %}x{% endif %}", &[]);
        assert_eq!(p, ["unknown test `nosuchtest` in the message template"]);
        let p = check("{{ evnt.ip }}", &["event"]);
        assert_eq!(p.len(), 1);
        assert!(p[0].starts_with("unknown name `evnt`"), "{p:?}");
        assert!(p[0].contains("`event`"), "{p:?}");
        // `event` is a filter rule's; a threshold rule has none.
        assert!(check("{{ event.ip }}", &[]).len() == 1);
        assert!(check("{{ x", &[])[0].starts_with("invalid message template"));
    }
}
