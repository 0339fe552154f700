#!/usr/bin/env bash
# Instructions per evaluation, ours against the `cel` crate (0.15), counted with callgrind.
#
# Each engine runs in its own process twice, with N1 and N2 evaluations; instructions per
# evaluation = (Ir(N2) - Ir(N1)) / (N2 - N1), so compiling the policy, building the context and
# starting the process are not counted. See the top of src/bin/instructions.rs for what each
# engine's figure includes.
#
#   benches/instructions.sh [simple|typical20]...      (default: simple typical20)
set -euo pipefail

cd "$(dirname "$0")/.."
N1=${N1:-2000}
N2=${N2:-12000}
cases=("$@")
[ ${#cases[@]} -eq 0 ] && cases=(simple typical20)

cargo build --quiet --profile bench -p wicket-benches --bin instructions
bin="${CARGO_TARGET_DIR:-target}/release/instructions"
[ -x "$bin" ] || bin="${CARGO_TARGET_DIR:-target}/bench/instructions"

count() { # engine case n -> total instructions
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$2" "$3" 2>&1 >/dev/null |
        awk '/Collected :/ { print $NF }'
}

per_eval() { # engine case -> instructions per evaluation
    local a b
    a=$(count "$1" "$2" "$N1")
    b=$(count "$1" "$2" "$N2")
    echo $(((b - a) / (N2 - N1)))
}

for case in "${cases[@]}"; do
    ours=$(per_eval wicket "$case")
    exec_only=$(per_eval cel-execute "$case")
    per_req=$(per_eval cel-per-request "$case")
    echo "INSTRUCTIONS $case: wicket $ours/eval;" \
        "cel execute only $exec_only/eval ($(awk "BEGIN { printf \"%.0f\", $exec_only / $ours }")x);" \
        "cel with the request bound per evaluation $per_req/eval ($(awk "BEGIN { printf \"%.0f\", $per_req / $ours }")x)"
done
