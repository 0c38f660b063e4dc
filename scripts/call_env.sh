# call_env.sh - sourced first by a device call's script (docs/measurements/*/callN/command.sh),
# in the repository root on the GPU machine: scripts/gpu_env.sh, then
#   L      the call's log folder, $OUT/n (the script packs it into n.tgz at its end);
#   st NAME RC   appends "NAME <seconds since the start> s rc=RC" to $L/steps.txt;
#   ok SECONDS   true while the call is younger than SECONDS (each step's guard);
# and writes nvidia-smi -L to $L/smi.txt.
source scripts/gpu_env.sh
L=$OUT/n
mkdir -p "$L"
t0=$(date +%s)
st() { echo "$1 $(( $(date +%s) - t0 )) s rc=$2" >> "$L/steps.txt"; }
ok() { [ $(( $(date +%s) - t0 )) -lt "$1" ]; }
nvidia-smi -L > "$L/smi.txt"
