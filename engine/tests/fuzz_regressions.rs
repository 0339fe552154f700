//! Inputs for the `policy` fuzz target (`fuzz/`), replayed through the same invariant check:
//! every policy in `examples/` and in the ngrok corpus (when `WICKET_POLICY_CORPUS` points at
//! it), hostile texts, and files under `fuzz/regressions/policy/`.

use std::path::Path;

use wicket_engine::fuzz::check_policy;

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if p
            .extension()
            .is_some_and(|x| x == "yml" || x == "yaml" || x == "json")
            || dir.ends_with("regressions/policy")
        {
            out.push(p);
        }
    }
}

#[test]
fn policies_keep_the_load_and_compiled_vs_reference_invariants() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut all = Vec::new();
    files(&root.join("examples"), &mut all);
    files(&root.join("fuzz/regressions/policy"), &mut all);
    if let Ok(corpus) = std::env::var("WICKET_POLICY_CORPUS") {
        files(Path::new(&corpus), &mut all);
    }
    assert!(all.len() >= 5, "found only {} policies", all.len());
    for path in &all {
        let data = std::fs::read(path).expect("readable policy");
        check_policy(&data);
    }
    for text in [
        "",
        "on_http_request: [",
        "on_http_request:\n  - expressions: ['req.url.path.matches(\"(\")']\n    actions: [{type: deny}]\n",
        "{\"on_http_request\": [{\"actions\": [{\"type\": \"set-vars\", \"config\": {\"vars\": [{\"x\": \"${1/0}\"}]}}]}]}",
        "on_tcp_connect:\n  - actions: [{type: restrict-ips, config: {allow: ['10.0.0.0/8', '::/0']}}]\n",
        "on_http_request:\n  - expressions: [\"'é' in req.headers\"]\n    actions: [{type: custom-response, config: {status_code: 200, body: \"${req.url.path}\"}}]\n",
    ] {
        check_policy(text.as_bytes());
    }
}
