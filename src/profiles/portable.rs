//! The derived `portable` profile: the ops every proven runtime supports, with the rules every
//! proven runtime states on them, except those a runtime marks `portable = false`. The caller
//! ([`Profile::all`]) passes the proven runtimes only: a documentation-only profile's rules do not
//! shape it.

use std::collections::BTreeSet;

use super::*;

impl Profile {
    /// The profile every one of `runtimes` accepts: the ops all of them support, and all their
    /// rules that are not marked `portable = false` (merged when two runtimes state the same).
    pub fn intersection(name: &str, runtimes: &[Profile]) -> Profile {
        let names: Vec<String> = runtimes.iter().map(|p| p.name.clone()).collect();
        let ops: BTreeSet<String> = match runtimes.split_first() {
            Some((first, rest)) => first
                .supported
                .ops
                .iter()
                .filter(|op| rest.iter().all(|p| p.supported.ops.contains(*op)))
                .cloned()
                .collect(),
            None => BTreeSet::new(),
        };
        let mut rules: Vec<Rule> = Vec::new();
        let mut op_rules: Vec<OpRule> = Vec::new();
        for p in runtimes {
            for rule in p.rules.iter().filter(|r| r.portable) {
                merge_rule(&mut rules, rule, &p.name);
            }
            for r in p.op_rules.iter().filter(|r| r.rule.portable) {
                let kept: Vec<String> = r.ops.iter().filter(|op| ops.contains(*op)).cloned().collect();
                for op in kept {
                    let existing = op_rules.iter_mut().find(|o| o.ops == [op.clone()] && o.rule.kind == r.rule.kind);
                    match existing {
                        Some(o) => merge_origin(&mut o.rule, &r.rule, &p.name),
                        None => op_rules.push(OpRule { ops: vec![op], rule: with_origin(&r.rule, &p.name) }),
                    }
                }
            }
        }
        // Every op some runtime knows but another lacks, with who lacks it.
        let known: BTreeSet<&String> =
            runtimes.iter().flat_map(|p| p.supported.ops.iter().chain(p.unsupported.keys())).collect();
        let unsupported = known
            .into_iter()
            .filter(|op| !ops.contains(*op))
            .map(|op| {
                let lacking: Vec<String> = runtimes
                    .iter()
                    .filter(|p| !p.supported.ops.contains(op))
                    .map(|p| match p.unsupported.get(op) {
                        Some(source) => format!("{} ({source})", p.name),
                        None => format!("{} (not in {})", p.name, p.supported.source),
                    })
                    .collect();
                (op.clone(), format!("not supported by {}", lacking.join("; ")))
            })
            .collect();
        Profile {
            name: name.to_string(),
            runtime: format!("every proven runtime ({})", names.join(", ")),
            version: "derived".to_string(),
            source: format!("the intersection of the proven profiles {}", names.join(", ")),
            note: Some(
                "Rules that depend on the model's opset or the heads' layout are left out, and so are the \
                 documentation-only profiles; target a runtime by name to check them."
                    .to_string(),
            ),
            supported: Supported { source: format!("the ops supported by all of {}", names.join(", ")), ops },
            rules,
            op_rules,
            unsupported,
            derived_from: names,
            narrow_default: None,
            // Portable keeps the thin forms: one runtime's richer op is not another's.
            richer_forms: vec![],
            proof: Proof::Derived,
        }
    }
}

fn with_origin(rule: &Rule, origin: &str) -> Rule {
    Rule { origin: vec![origin.to_string()], ..rule.clone() }
}

fn merge_origin(into: &mut Rule, rule: &Rule, origin: &str) {
    into.origin.push(origin.to_string());
    into.source = format!("{}; {}", into.source, rule.source);
}

fn merge_rule(rules: &mut Vec<Rule>, rule: &Rule, origin: &str) {
    match rules.iter_mut().find(|r| r.kind == rule.kind) {
        Some(existing) => merge_origin(existing, rule, origin),
        None => rules.push(with_origin(rule, origin)),
    }
}
