# Install steps shared by conformance/run.sh and the legs' setup.sh; source it, then call:
#
#   apt_install WHO PKG...                   Debian packages, only those missing (needs root then)
#   pinned_venv WHO VENV REQUIREMENTS [PIP_ARG...]
#                                            a venv with the wheels pinned in REQUIREMENTS, reused
#                                            while the pins and the interpreter ($PYTHON, default
#                                            python3) are the same, rebuilt otherwise
#
# WHO prefixes the messages ("conformance", "ncnn leg", ...).

apt_install() {
    local who="$1" pkg missing=()
    shift
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    if [[ "$(id -u)" != 0 ]]; then
        echo "$who: ${missing[*]} not installed, and apt-get needs root" >&2
        return 1
    fi
    echo "$who: apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

pinned_venv() {
    local who="$1" venv="$2" requirements="$3" python="${PYTHON:-python3}" want stamp
    shift 3
    want="$("$python" - "$requirements" <<'PY'
import hashlib, sys
print(hashlib.sha256(open(sys.argv[1], "rb").read() + sys.version.encode()).hexdigest())
PY
)"
    stamp="$venv/.posefix-requirements"
    [[ -x "$venv/bin/python" && "$(cat "$stamp" 2>/dev/null)" == "$want" ]] && return 0
    echo "$who: creating $venv"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: "$@" -r "$requirements"
    echo "$want" >"$stamp"
}
