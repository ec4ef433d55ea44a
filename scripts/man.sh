#!/usr/bin/env bash
# scripts/man.sh BERTH OUTDIR - man pages from berth's own help text: berth(1)
# from `berth --help`, and berth-COMMAND(1) from `berth COMMAND --help` for
# every command the top-level help lists. The help text is the one source:
# a flag added to a command appears in its page at the next build.
set -euo pipefail
berth=$1
out=$2
mkdir -p "$out"
version=$("$berth" --version | awk '{print $2}')
# A fixed date keeps the pages reproducible (SOURCE_DATE_EPOCH when given).
date=$(date -u -d "@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}" +%Y-%m-%d)

# roff-escape stdin: backslashes, and a leading . or ' would be requests.
esc() { sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/" -e 's/-/\\-/g'; }

# page NAME SUMMARY HELPTEXT_FILE
page() {
	local name=$1 summary=$2 help=$3 upper
	upper=$(echo "$name" | tr '[:lower:]' '[:upper:]')
	{
		echo ".TH $upper 1 \"$date\" \"berth $version\" \"berth manual\""
		echo ".SH NAME"
		printf '%s \\- %s\n' "${name//-/\\-}" "$(echo "$summary" | esc)"
		awk -v summary="$summary" '
			function e(s) { gsub(/\\/, "\\e", s); gsub(/-/, "\\-", s); if (s ~ /^[.'"'"']/) s = "\\&" s; return s }
			BEGIN { section = "SYNOPSIS"; print ".SH SYNOPSIS"; print ".nf" }
			/^options:$/ {
				if (section == "SYNOPSIS") { print ".fi"; describe() }
				section = "OPTIONS"; print ".SH OPTIONS"; next
			}
			/^commands:$/ {
				if (section == "SYNOPSIS") print ".fi"
				section = "COMMANDS"; print ".SH COMMANDS"; next
			}
			function describe() { print ".SH DESCRIPTION"; print e(toupper(substr(summary, 1, 1)) substr(summary, 2) ".") }
			section == "SYNOPSIS" && /^$/ { print ".fi"; section = "DESCRIPTION"; describe(); print ".PP"; next }
			section == "SYNOPSIS" { sub(/^usage: /, ""); print e($0); next }
			section == "DESCRIPTION" && /^$/ { print ".PP"; next }
			section == "DESCRIPTION" { print e($0); next }
			section == "OPTIONS" && /^  -/ {
				line = $0; sub(/^  /, "", line)
				# "-d, --detach   text" or "--addr VALUE   text": flags, then 2+ spaces.
				split(line, parts, /   +/)
				flags = parts[1]; text = substr(line, length(flags) + 1); sub(/^ +/, "", text)
				n = split(flags, f, / /); head = ""
				for (i = 1; i <= n; i++) {
					w = f[i]
					comma = w ~ /,$/ ? "," : ""; sub(/,$/, "", w)
					if (w ~ /^-/) head = head (head ? " " : "") "\\fB" e(w) "\\fR" comma
					else head = head " \\fI" e(w) "\\fR"
				}
				print ".TP"; print head; print e(text); next
			}
			section == "OPTIONS" && /^ +/ { sub(/^ +/, ""); print e($0); next }
			section == "COMMANDS" && /^  [a-z]/ {
				name = $1; text = $0; sub(/^  [a-z-]+ +/, "", text)
				print ".TP"; print "\\fBberth " e(name) "\\fR"; print e(text) ": see \\fBberth\\-" e(name) "\\fR(1)"; next
			}
			section == "COMMANDS" && /^$/ { section = "DESCRIPTION"; print ".SH DESCRIPTION"; next }
			section == "COMMANDS" { next }
			{ print e($0) }
			END { if (section == "SYNOPSIS") print ".fi" }
		' "$help"
		echo ".SH SEE ALSO"
		if [ "$name" = berth ]; then
			"$berth" --help | awk '/^commands:/ {on = 1; next} on && /^  [a-z]/ {printf "%s\\fBberth\\-%s\\fR(1)", (n++ ? ", " : ""), $1} END {print ""}'
		else
			echo "\\fBberth\\fR(1)"
		fi
	} >"$out/$name.1"
}

tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
"$berth" --help >"$tmp"
page berth "a cluster scheduler and container orchestrator" "$tmp"
"$berth" --help | awk '/^commands:/ {on = 1; next} on && /^  [a-z]/ {c = $1; $1 = ""; sub(/^ +/, ""); print c "\t" $0}' |
	while IFS=$'\t' read -r cmd summary; do
		"$berth" "$cmd" --help >"$tmp"
		page "berth-$cmd" "$summary" "$tmp"
	done
