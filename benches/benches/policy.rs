//! Policy evaluation and compilation, against the `cel` crate doing the same work in the same
//! run. Each case is measured by criterion and also printed as a `RATIO` line (our time, the
//! `cel` crate's time, their ratio). Run with
//! `cargo bench -p wicket-benches --bench policy -- --warm-up-time 1 --measurement-time 2`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use wicket_benches::{
    SIMPLE, cel_cidr_list, cel_context, cel_programs, cel_run, cidr_expr, client_ip_rules, compare,
    general_rules, host_path_rules, non_indexable_rules, program, request, restrict_ips_program,
    typical_20,
};
use wicket_engine::compile::compile;
use wicket_engine::compile::ir::{PolicyIr, RuleIr};
use wicket_engine::program::Scratch;
use wicket_policy::Phase;

fn simple_predicate(c: &mut Criterion) {
    let p = program(vec![vec![SIMPLE.to_owned()]]);
    let req = request("GET https://api.example.test/api/users", [203, 0, 113, 7]);
    let mut s = Scratch::new();
    let ctx = cel_context(&req);
    let cel = cel_programs(&[vec![SIMPLE.to_owned()]]);
    let mut g = c.benchmark_group("simple_predicate");
    g.bench_function("wicket", |b| {
        b.iter(|| {
            black_box(
                p.eval(Phase::HttpRequest, black_box(&req), &mut s)
                    .decision
                    .terminates(),
            )
        });
    });
    g.bench_function("cel", |b| b.iter(|| black_box(cel_run(&cel, &ctx))));
    g.finish();
    compare(
        "simple predicate",
        || {
            black_box(
                p.eval(Phase::HttpRequest, &req, &mut s)
                    .decision
                    .terminates(),
            );
        },
        || {
            black_box(cel_run(&cel, &ctx));
        },
    );
}

fn typical_phase(c: &mut Criterion) {
    let rules = typical_20();
    let p = program(rules.clone());
    let req = request(
        "GET https://api.example.test/v1/users?page=2",
        [203, 0, 113, 7],
    );
    let mut s = Scratch::new();
    let ctx = cel_context(&req);
    let cel = cel_programs(&rules);
    assert_eq!(
        cel_run(&cel, &ctx),
        rules.len(),
        "the request passes every rule"
    );
    let mut g = c.benchmark_group("typical_20_rules");
    g.bench_function("wicket", |b| {
        b.iter(|| {
            black_box(
                p.eval(Phase::HttpRequest, black_box(&req), &mut s)
                    .decision
                    .terminates(),
            )
        });
    });
    g.bench_function("cel", |b| b.iter(|| black_box(cel_run(&cel, &ctx))));
    g.finish();
    compare(
        "typical 20-rule phase",
        || {
            black_box(
                p.eval(Phase::HttpRequest, &req, &mut s)
                    .decision
                    .terminates(),
            );
        },
        || {
            black_box(cel_run(&cel, &ctx));
        },
    );
}

fn client_ip_cidrs(c: &mut Criterion) {
    // `restrict-ips` with N deny CIDRs (the client is in none of them); the `cel` crate tests
    // the same list through an `inCidrRanges` function over a bound list variable.
    let req = request("GET https://api.example.test/", [203, 0, 113, 7]);
    let mut g = c.benchmark_group("client_ip_cidrs");
    g.sample_size(10);
    for n in [10usize, 1_000, 100_000] {
        let t = std::time::Instant::now();
        let p = restrict_ips_program(n);
        println!(
            "BUILD {n} CIDRs: restrict-ips table built in {:?}",
            t.elapsed()
        );
        let mut ctx = cel_context(&req);
        ctx.add_variable_from_value("cidrs", cel_cidr_list(n));
        let cel = cel_programs(&[vec!["inCidrRanges(conn.client_ip, cidrs)".to_owned()]]);
        let mut s = Scratch::new();
        g.bench_with_input(BenchmarkId::new("wicket", n), &n, |b, _| {
            b.iter(|| {
                black_box(
                    p.eval(Phase::HttpRequest, black_box(&req), &mut s)
                        .decision
                        .terminates(),
                )
            });
        });
        g.bench_with_input(BenchmarkId::new("cel", n), &n, |b, _| {
            b.iter(|| black_box(cel_run(&cel, &ctx)));
        });
        compare(
            &format!("client IP vs {n} CIDRs"),
            || {
                black_box(
                    p.eval(Phase::HttpRequest, &req, &mut s)
                        .decision
                        .terminates(),
                );
            },
            || {
                black_box(cel_run(&cel, &ctx));
            },
        );
    }
    g.finish();
    // The same through the CEL function on an inline constant list (expressions are limited
    // to 100 kB, so up to 1,000 CIDRs here).
    let t = std::time::Instant::now();
    let p = program(vec![vec![cidr_expr(1_000)]]);
    println!(
        "BUILD 1000 CIDRs: inCidrRanges expression compiled in {:?}",
        t.elapsed()
    );
    let mut s = Scratch::new();
    let ctx = cel_context(&req);
    let cel = cel_programs(&[vec![cidr_expr(1_000)]]);
    compare(
        "inCidrRanges over 1000 inline CIDRs",
        || {
            black_box(
                p.eval(Phase::HttpRequest, &req, &mut s)
                    .decision
                    .terminates(),
            );
        },
        || {
            black_box(cel_run(&cel, &ctx));
        },
    );
}

fn host_path(c: &mut Criterion) {
    // The request matches the last rule's host but not its path: every rule is considered.
    let mut g = c.benchmark_group("host_path_rules");
    g.sample_size(10);
    for n in [10usize, 1_000, 10_000] {
        let rules = host_path_rules(n);
        let p = program(rules.clone());
        let req = request(
            &format!("GET https://h{}.example.test/other/x", n - 1),
            [203, 0, 113, 7],
        );
        let ctx = cel_context(&req);
        let cel = cel_programs(&rules);
        let mut s = Scratch::new();
        g.bench_with_input(BenchmarkId::new("wicket", n), &n, |b, _| {
            b.iter(|| {
                black_box(
                    p.eval(Phase::HttpRequest, black_box(&req), &mut s)
                        .decision
                        .terminates(),
                )
            });
        });
        g.bench_with_input(BenchmarkId::new("cel", n), &n, |b, _| {
            b.iter(|| black_box(cel_run(&cel, &ctx)));
        });
        compare(
            &format!("{n} host+path rules"),
            || {
                black_box(
                    p.eval(Phase::HttpRequest, &req, &mut s)
                        .decision
                        .terminates(),
                );
            },
            || {
                black_box(cel_run(&cel, &ctx));
            },
        );
    }
    g.finish();
}

fn client_ip_guarded(c: &mut Criterion) {
    // Rules guarded on the client address: the request is in the last rule's range but not on
    // its path, so every rule is considered (the index narrows them to one).
    let mut g = c.benchmark_group("client_ip_rules");
    g.sample_size(10);
    for n in [10usize, 1_000, 10_000] {
        let rules = client_ip_rules(n);
        let p = program(rules.clone());
        let last = n - 1;
        let req = request(
            "GET https://api.example.test/other/x",
            [
                10,
                u8::try_from((last / 256) % 256).unwrap_or(0),
                u8::try_from(last % 256).unwrap_or(0),
                7,
            ],
        );
        let ctx = cel_context(&req);
        let cel = cel_programs(&rules);
        let mut s = Scratch::new();
        g.bench_with_input(BenchmarkId::new("wicket", n), &n, |b, _| {
            b.iter(|| {
                black_box(
                    p.eval(Phase::HttpRequest, black_box(&req), &mut s)
                        .decision
                        .terminates(),
                )
            });
        });
        g.bench_with_input(BenchmarkId::new("cel", n), &n, |b, _| {
            b.iter(|| black_box(cel_run(&cel, &ctx)));
        });
        compare(
            &format!("{n} client-IP + path rules"),
            || {
                black_box(
                    p.eval(Phase::HttpRequest, &req, &mut s)
                        .decision
                        .terminates(),
                );
            },
            || {
                black_box(cel_run(&cel, &ctx));
            },
        );
    }
    g.finish();
}

fn non_indexable(c: &mut Criterion) {
    let rules = non_indexable_rules(1_000);
    let p = program(rules.clone());
    let req = request("GET https://api.example.test/v1/users", [203, 0, 113, 7]);
    let ctx = cel_context(&req);
    let cel = cel_programs(&rules);
    let mut s = Scratch::new();
    let mut g = c.benchmark_group("non_indexable_1000");
    g.sample_size(10);
    g.bench_function("wicket", |b| {
        b.iter(|| {
            black_box(
                p.eval(Phase::HttpRequest, black_box(&req), &mut s)
                    .decision
                    .terminates(),
            )
        });
    });
    g.bench_function("cel", |b| b.iter(|| black_box(cel_run(&cel, &ctx))));
    g.finish();
    compare(
        "1,000 non-indexable rules",
        || {
            black_box(
                p.eval(Phase::HttpRequest, &req, &mut s)
                    .decision
                    .terminates(),
            );
        },
        || {
            black_box(cel_run(&cel, &ctx));
        },
    );
}

fn general(c: &mut Criterion) {
    let rules = general_rules(1_000);
    let p = program(rules.clone());
    let req = request("GET https://api.example.test/v1/users", [203, 0, 113, 7]);
    let ctx = cel_context(&req);
    let cel = cel_programs(&rules);
    let mut s = Scratch::new();
    let mut g = c.benchmark_group("general_1000");
    g.sample_size(10);
    g.bench_function("wicket", |b| {
        b.iter(|| {
            black_box(
                p.eval(Phase::HttpRequest, black_box(&req), &mut s)
                    .decision
                    .terminates(),
            )
        });
    });
    g.bench_function("cel", |b| b.iter(|| black_box(cel_run(&cel, &ctx))));
    g.finish();
    compare(
        "1,000 general-expression rules",
        || {
            black_box(
                p.eval(Phase::HttpRequest, &req, &mut s)
                    .decision
                    .terminates(),
            );
        },
        || {
            black_box(cel_run(&cel, &ctx));
        },
    );
}

fn compile_10000(c: &mut Criterion) {
    let rules = host_path_rules(10_000);
    let policy = PolicyIr {
        phases: vec![(
            Phase::HttpRequest,
            rules
                .iter()
                .map(|e| RuleIr {
                    name: None,
                    expressions: e.clone(),
                    actions: vec![wicket_benches::deny(403)],
                })
                .collect(),
        )],
    };
    let mut g = c.benchmark_group("compile_10000_rules");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("wicket", |b| {
        b.iter(|| black_box(compile(&policy).map(|p| p.rule_count(Phase::HttpRequest))))
    });
    g.bench_function("cel", |b| b.iter(|| black_box(cel_programs(&rules).len())));
    g.finish();
    compare(
        "compile 10,000 rules",
        || {
            black_box(
                compile(&policy)
                    .map(|p| p.rule_count(Phase::HttpRequest))
                    .ok(),
            );
        },
        || {
            black_box(cel_programs(&rules).len());
        },
    );
}

criterion_group!(
    benches,
    simple_predicate,
    typical_phase,
    client_ip_cidrs,
    host_path,
    client_ip_guarded,
    non_indexable,
    general,
    compile_10000
);
criterion_main!(benches);
