"""Check training-data JSONL files against the stigma-v1 schema (see LABELLING.md) and print counts."""
import collections, json, sys

CATS = {"criminalisation", "corruption_profiteering", "false_claims", "anti_development",
        "disloyalty_foreign", "gendered", "discrediting_oversight", "threat_incitement"}
KEYS = {"id", "lang", "text", "stigmatising", "categories", "voice", "targets", "about_defenders"}
errors, rows, ids = [], [], set()
for path in sys.argv[1:]:
    for n, line in enumerate(open(path, encoding="utf-8"), 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            r = json.loads(line)
        except json.JSONDecodeError as e:
            errors.append(f"{where}: invalid JSON: {e}"); continue
        if set(r) != KEYS:
            errors.append(f"{where}: keys {sorted(r)} != {sorted(KEYS)}"); continue
        if r["id"] in ids: errors.append(f"{where}: duplicate id {r['id']}")
        ids.add(r["id"])
        if r["lang"] not in ("es", "en"): errors.append(f"{where}: bad lang")
        if r["stigmatising"] not in (0, 1): errors.append(f"{where}: bad stigmatising")
        if not set(r["categories"]) <= CATS: errors.append(f"{where}: unknown category {set(r['categories']) - CATS}")
        if bool(r["categories"]) != bool(r["stigmatising"]): errors.append(f"{where}: categories must be non-empty iff stigmatising")
        v = r["voice"]
        if r["stigmatising"] and v not in ("authorial", "attributed"): errors.append(f"{where}: stigmatising needs authorial/attributed voice")
        if not r["stigmatising"] and v not in ("counter", "none"): errors.append(f"{where}: non-stigmatising needs counter/none voice")
        if v == "none" and r["targets"]: errors.append(f"{where}: voice none must have no targets")
        if v != "none" and not r["targets"]: errors.append(f"{where}: voice {v} needs targets")
        if r["about_defenders"] not in (0, 1): errors.append(f"{where}: bad about_defenders")
        if v != "none" and r["about_defenders"] != 1: errors.append(f"{where}: about_defenders must be 1 for voice {v}")
        if len(r["text"].split()) < 8: errors.append(f"{where}: text too short")
        rows.append(r)
texts = collections.Counter(r["text"] for r in rows)
errors += [f"duplicate text: {t[:60]}" for t, c in texts.items() if c > 1]
print("\n".join(errors) or "OK: no errors")
print("rows", len(rows), "lang", dict(collections.Counter(r["lang"] for r in rows)))
print("stig/voice", dict(collections.Counter((r["stigmatising"], r["voice"]) for r in rows)))
print("categories", dict(collections.Counter(c for r in rows for c in r["categories"])))
print("about_defenders", dict(collections.Counter(r["about_defenders"] for r in rows)))
sys.exit(1 if errors else 0)
