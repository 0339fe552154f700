//! Runs one engine on one workload `N` times, for counting instructions under
//! `valgrind --tool=callgrind` (see `benches/instructions.sh`, which runs two values of `N` and
//! divides the difference, so that set-up and process start are not counted).
//!
//! ```text
//! instructions ENGINE CASE N
//!   ENGINE  wicket | cel-execute | cel-per-request
//!   CASE    simple | typical20
//! ```
//!
//! - `wicket`: `Program::eval(Phase::HttpRequest, &request, &mut scratch)` — the full phase
//!   (rule walk, condition, outcome) over a borrowed request view, scratch reused.
//! - `cel-execute`: `cel::Program::execute` for each rule in order until one is true, over a
//!   `cel::Context` holding the request, built once outside the loop (favourable to the crate).
//! - `cel-per-request`: the same programs, with the request's variables (`req`, `conn` as
//!   nested maps) bound per evaluation in a child scope of a prepared context — what a proxy
//!   using the crate does, since the request changes every time.

use std::hint::black_box;
use std::process::ExitCode;

use wicket_benches::{
    SIMPLE, cel_context, cel_programs, cel_request_vars, cel_run, program, request, typical_20,
};
use wicket_engine::program::Scratch;
use wicket_policy::Phase;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [engine, case, n] = args.as_slice() else {
        eprintln!(
            "usage: instructions wicket|cel-execute|cel-per-request simple|typical20 ITERATIONS"
        );
        return ExitCode::from(2);
    };
    let Ok(n) = n.parse::<u64>() else {
        eprintln!("`{n}` is not a number of iterations");
        return ExitCode::from(2);
    };
    let (rules, line) = match case.as_str() {
        "simple" => (
            vec![vec![SIMPLE.to_owned()]],
            "GET https://api.example.test/api/users",
        ),
        "typical20" => (typical_20(), "GET https://api.example.test/v1/users?page=2"),
        other => {
            eprintln!("unknown case `{other}` (simple, typical20)");
            return ExitCode::from(2);
        }
    };
    let req = request(line, [203, 0, 113, 7]);
    let mut matched = 0u64;
    match engine.as_str() {
        "wicket" => {
            let p = program(rules);
            let mut s = Scratch::new();
            for _ in 0..n {
                let out = p.eval(Phase::HttpRequest, black_box(&req), &mut s);
                matched += u64::from(black_box(out.decision.terminates()));
            }
        }
        "cel-execute" => {
            let progs = cel_programs(&rules);
            let ctx = cel_context(&req);
            for _ in 0..n {
                matched += u64::from(black_box(cel_run(&progs, black_box(&ctx))) < rules.len());
            }
        }
        "cel-per-request" => {
            let progs = cel_programs(&rules);
            // Functions and the standard library are prepared once; the request is bound per
            // evaluation.
            let base = cel_context(&request("GET https://unused.test/", [0, 0, 0, 0]));
            for _ in 0..n {
                let mut ctx = base.new_inner_scope();
                for (name, value) in cel_request_vars(black_box(&req)) {
                    ctx.add_variable_from_value(name, value);
                }
                matched += u64::from(black_box(cel_run(&progs, &ctx)) < rules.len());
            }
        }
        other => {
            eprintln!("unknown engine `{other}` (wicket, cel-execute, cel-per-request)");
            return ExitCode::from(2);
        }
    }
    println!("{engine} {case}: {n} evaluations, {matched} matched");
    ExitCode::SUCCESS
}
