//! Golden replay test: a small generated market tape replayed through `examples/rules/market.cep`
//! must give exactly the signals in `tests/golden/market_30k_seed11.jsonl`.
//!
//! The tape is generated through the library, the same way `strix gen market` does it. Besides
//! the byte-for-byte comparison, the test checks facts that do not depend on the golden file:
//! matched sequence numbers increase within each signal, every `layering` signal's events belong
//! to one account (looked up on the tape itself), each rule has recall and precision 1.0 against
//! the tape's labels, and each rule emits exactly as many signals as the generator injected
//! instances of its class.
//!
//! To (re)create the golden file after an intended change of output:
//!
//! ```text
//! STRIX_BLESS=1 cargo test --test golden
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use strix::feeds::r#gen::{GenSpec, Generated, Generator, write_tape};
use strix::feeds::tape::TapeReader;
use strix::replay::{ReplayOptions, ReplayReport, replay};

const EVENTS: u64 = 30_000;
const SEED: u64 = 11;
const GOLDEN: &str = "tests/golden/market_30k_seed11.jsonl";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn blessing() -> bool {
    std::env::var("STRIX_BLESS").is_ok_and(|v| v == "1")
}

/// Removes the temporary tape when the test ends, passing or failing.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Generates the market tape at `path` as `strix gen market --events EVENTS --seed SEED` would.
fn generate_market_tape(path: &Path) -> Result<Generated> {
    let spec = GenSpec::new(EVENTS, SEED);
    let (generated, info) = write_tape(Generator::Market, &spec, path, &mut |_| {})?;
    ensure!(
        info.event_count == EVENTS,
        "tape has {} events, expected {EVENTS}",
        info.event_count
    );
    Ok(generated)
}

/// Replays `tape` with the market rules, returning the JSON Lines output and the report.
fn replay_market(tape: &Path) -> Result<(Vec<u8>, ReplayReport)> {
    let opts = ReplayOptions {
        rules: root().join("examples/rules/market.cep"),
        tape: tape.to_path_buf(),
        max_runs_per_key: 10_000,
        time: Default::default(),
    };
    let mut out = Vec::new();
    let report = replay(&opts, &mut out, &mut |_, _| {})?;
    Ok((out, report))
}

/// Compares `actual` with the golden file, or rewrites it when blessing.
fn check_golden(actual: &[u8]) -> Result<()> {
    let path = root().join(GOLDEN);
    if blessing() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, actual).with_context(|| format!("writing {}", path.display()))?;
        println!(
            "note: STRIX_BLESS=1: wrote {} ({} lines)",
            path.display(),
            actual.iter().filter(|&&b| b == b'\n').count()
        );
        return Ok(());
    }
    let expected = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "golden file {} is missing; create it with `STRIX_BLESS=1 cargo test --test golden`",
            path.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    if expected == actual {
        return Ok(());
    }
    let (exp, act) = (
        String::from_utf8_lossy(&expected),
        String::from_utf8_lossy(actual),
    );
    let (exp_lines, act_lines): (Vec<&str>, Vec<&str>) =
        (exp.lines().collect(), act.lines().collect());
    let first_diff = exp_lines
        .iter()
        .zip(&act_lines)
        .position(|(e, a)| e != a)
        .unwrap_or(exp_lines.len().min(act_lines.len()));
    bail!(
        "signals differ from {} ({} expected lines, {} actual); first difference at line {}:\n  \
         expected: {}\n  actual:   {}\nIf the change is intended, re-bless with \
         `STRIX_BLESS=1 cargo test --test golden`",
        path.display(),
        exp_lines.len(),
        act_lines.len(),
        first_diff + 1,
        exp_lines.get(first_diff).unwrap_or(&"<end of file>"),
        act_lines.get(first_diff).unwrap_or(&"<end of output>"),
    )
}

/// Account name of every event of the tape that has an `account` field, by seq.
fn accounts_by_seq(tape: &Path) -> Result<HashMap<u64, String>> {
    let reader = TapeReader::open(tape)?;
    let catalog = reader.catalog();
    let account_slot: Vec<Option<usize>> =
        catalog.types().iter().map(|t| t.slot("account")).collect();
    let mut out = HashMap::new();
    for batch in reader.batches() {
        let batch = batch?;
        for row in 0..batch.len() {
            let e = batch.event(row);
            let Some(slot) = account_slot.get(usize::from(e.type_id)).copied().flatten() else {
                continue;
            };
            let sym = u32::try_from(e.slots[slot]).context("account slot is not a symbol id")?;
            let name = reader
                .symbols()
                .name(sym)
                .with_context(|| format!("event {} has unknown account symbol {sym}", e.seq))?;
            out.insert(e.seq, name.to_owned());
        }
    }
    ensure!(
        !out.is_empty(),
        "no event with an `account` field on the tape"
    );
    Ok(out)
}

#[test]
fn market_30k_seed11_matches_golden() -> Result<()> {
    let tape =
        TempFile(std::env::temp_dir().join(format!("strix-golden-{}.tape", std::process::id())));
    let generated = generate_market_tape(&tape.0)?;
    let (out, report) = replay_market(&tape.0)?;

    // Independent facts about the output (they hold whatever the golden file says).
    let signals: Vec<serde_json::Value> = out
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(serde_json::from_slice)
        .collect::<Result<_, _>>()
        .context("signal output is not JSON Lines")?;
    ensure!(
        signals.len() as u64 == report.signals,
        "{} signal lines but the report counts {}",
        signals.len(),
        report.signals
    );
    ensure!(report.events == EVENTS, "replayed {} events", report.events);

    let accounts = accounts_by_seq(&tape.0)?;
    let mut per_rule: HashMap<String, u64> = HashMap::new();
    for (i, s) in signals.iter().enumerate() {
        let rule = s["rule"].as_str().context("signal without rule")?;
        *per_rule.entry(rule.to_owned()).or_default() += 1;
        let seq: Vec<u64> = s["seq"]
            .as_array()
            .with_context(|| format!("signal {i} has no seq array: {s}"))?
            .iter()
            .map(|v| v.as_u64().context("seq entry is not a u64"))
            .collect::<Result<_>>()?;
        ensure!(!seq.is_empty(), "signal {i} matched no events: {s}");
        ensure!(
            seq.windows(2).all(|w| w[0] < w[1]),
            "signal {i}'s seq is not strictly increasing: {s}"
        );
        let id = s["id"].as_str().context("signal without id")?;
        ensure!(
            id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "signal {i}'s id is not 16 hex digits: {s}"
        );
        if rule == "layering" {
            let mut owners = seq.iter().map(|q| {
                accounts
                    .get(q)
                    .map(String::as_str)
                    .with_context(|| format!("seq {q} of signal {i} has no account"))
            });
            let first = owners.next().context("empty seq")??;
            for owner in owners {
                let owner = owner?;
                ensure!(
                    owner == first,
                    "layering signal {i} mixes accounts {first} and {owner}: {s}"
                );
            }
            ensure!(
                s["key"].as_str() == Some(first),
                "layering signal {i} is keyed {} but its events are {first}'s",
                s["key"]
            );
        }
    }

    ensure!(
        generated.injected.len() == 2,
        "expected two injected classes, got {:?}",
        generated.injected
    );
    for (class, injected) in &generated.injected {
        ensure!(*injected > 0, "the generator injected no {class} instance");
        let r = report
            .rules
            .iter()
            .find(|r| r.signal == *class)
            .with_context(|| format!("no rule emits {class}"))?;
        ensure!(
            r.label.as_deref() == Some(class.as_str()),
            "rule {} was scored against {:?}, expected {class}",
            r.rule,
            r.label
        );
        ensure!(
            r.instances == Some(*injected as usize),
            "rule {}: the tape has {:?} {class} instances, the generator injected {injected}",
            r.rule,
            r.instances
        );
        ensure!(
            r.recall == Some(1.0),
            "rule {}: recall {:?}",
            r.rule,
            r.recall
        );
        ensure!(
            r.precision == Some(1.0),
            "rule {}: precision {:?}",
            r.rule,
            r.precision
        );
        let emitted = per_rule.get(&r.rule).copied().unwrap_or(0);
        ensure!(
            emitted == *injected && r.signals == *injected,
            "rule {}: {emitted} signal lines ({} in the report) for {injected} injected {class} \
             instances",
            r.rule,
            r.signals
        );
    }
    ensure!(
        per_rule.len() == report.rules.len(),
        "signals from unexpected rules: {per_rule:?}"
    );

    check_golden(&out)
}
