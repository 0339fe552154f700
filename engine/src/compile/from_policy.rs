//! The policy crate's checked model ([`CheckedPolicy`]) as the compiler's input.

use wicket_policy::Phase;
use wicket_policy::model::{self, CheckedPolicy};

use super::ir::{ActionIr, ConfigValue, PolicyIr, RuleIr};

fn config(v: &model::Value) -> ConfigValue {
    match v {
        model::Value::Null => ConfigValue::Null,
        model::Value::Bool(b) => ConfigValue::Bool(*b),
        model::Value::Int(i) => ConfigValue::Int(*i),
        model::Value::Float(f) => ConfigValue::Float(*f),
        model::Value::Str(s) => ConfigValue::Str(s.clone()),
        model::Value::Template(c) => ConfigValue::Template(c.source.clone()),
        model::Value::Expr(c) => ConfigValue::Expr(c.source.clone()),
        model::Value::Duration(d) => ConfigValue::Duration(*d),
        model::Value::List(items) => ConfigValue::List(items.iter().map(config).collect()),
        model::Value::Map(entries) => ConfigValue::Map(
            entries
                .iter()
                .map(|e| (e.key.clone(), config(&e.value)))
                .collect(),
        ),
    }
}

impl From<&CheckedPolicy> for PolicyIr {
    fn from(policy: &CheckedPolicy) -> PolicyIr {
        let phases = Phase::ALL
            .into_iter()
            .map(|phase| {
                let rules = policy
                    .rules(phase)
                    .iter()
                    .map(|r| RuleIr {
                        name: r.name.clone(),
                        expressions: r.expressions.iter().map(|e| e.source.clone()).collect(),
                        actions: r
                            .actions
                            .iter()
                            .map(|a| ActionIr {
                                kind: a.spec.name.to_owned(),
                                config: config(&a.config),
                            })
                            .collect(),
                    })
                    .collect();
                (phase, rules)
            })
            .collect();
        PolicyIr { phases }
    }
}

#[cfg(test)]
mod tests {
    use wicket_policy::lint::{LintOptions, lint};
    use wicket_policy::source::SourceMap;

    use super::*;
    use crate::compile::compile;
    use crate::program::{Decision, OwnedRequest, Scratch};

    #[test]
    fn a_loaded_policy_compiles_and_runs() {
        let text = "on_http_request:\n  - name: block admin\n    expressions:\n      - req.url.path.startsWith('/admin')\n    actions:\n      - type: deny\n        config:\n          status_code: 404\n";
        let mut map = SourceMap::new();
        let id = map.add("p.yml", text);
        let report = lint(&mut map, id, LintOptions::default());
        assert_eq!(report.errors(), 0, "{:?}", report.diagnostics);
        let ir = PolicyIr::from(&report.policies[0]);
        let p = compile(&ir).unwrap();
        let mut s = Scratch::new();
        let r = OwnedRequest::parse("GET https://a.test/admin").unwrap();
        assert_eq!(
            p.eval(Phase::HttpRequest, &r, &mut s).decision,
            Decision::Deny { status: 404 }
        );
    }
}
