//! The `strix` command line: a thin client of the `strix` library.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use gpu_kernels::score::ScoreDevice;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use strix::cep_core::expr::ExprDisplay;
use strix::cep_core::nfa::{AfterMatch, Contiguity, Edge, Selection, Target};
use strix::cep_core::query::{WindowExprDisplay, format_duration};
use strix::cep_core::rule::{Program, ScoreSource};
use strix::cep_core::symbol::SymbolTable;
use strix::feeds;
use strix::feeds::r#gen::Generator;
use strix::feeds::tape::{TapeReader, TapeWriter};
use strix::replay::{ReplayOptions, RunOptions, ScoreRun, parse_duration, replay_run};
use strix::{DedupOptions, MatcherKind, TimeOptions};

/// Strix: complex event processing for market and transaction streams.
///
/// Write pattern rules in `.cep` files, check and explain them, generate or import tapes, and
/// replay tapes through the rules to get signals (JSON Lines) and a benchmark report.
#[derive(Debug, Parser)]
#[command(name = "strix", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check rule files; prints errors as file:line:col with a caret, exits non-zero on any.
    Check {
        /// Rule files (.cep).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Show each query (window, groups, emitted fields) and each rule's compiled automaton:
    /// states, transitions and conditions.
    Explain {
        /// Rule file (.cep).
        file: PathBuf,
        /// Print Graphviz dot instead of text.
        #[arg(long)]
        dot: bool,
    },
    /// Replay a tape through a rule file: signals as JSON Lines, then a benchmark report.
    Replay(ReplayArgs),
    /// Create, inspect and export tapes.
    #[command(subcommand)]
    Tape(TapeCommand),
    /// Generate synthetic tapes: market or card events with labelled injected patterns, or
    /// unlabelled ticks.
    #[command(subcommand)]
    Gen(GenCommand),
    /// Sweep a rule's parameters over a labelled tape: precision, recall and F1 per parameter
    /// vector, from one pass over the tape.
    Sweep(SweepArgs),
    /// Fit scoring models for `score using` rules.
    #[command(subcommand)]
    Model(ModelCommand),
}

#[derive(Debug, Subcommand)]
enum ModelCommand {
    /// Fit a logistic regression to the labelled events of a tape (Newton's method with an L2
    /// penalty, in f64, deterministic) and write it as a strix-model JSON document.
    Fit(FitArgs),
}

#[derive(Debug, Args)]
struct FitArgs {
    /// Labelled tape to fit on.
    #[arg(long)]
    tape: PathBuf,
    /// Event type whose events are the rows.
    #[arg(long = "type")]
    type_name: String,
    /// Fields used as features, in order (numbers or bools); the rule's emit fields must have
    /// these names.
    #[arg(long, value_delimiter = ',', required = true)]
    features: Vec<String>,
    /// Label class that is the positive target (events carrying it are 1, the rest 0).
    #[arg(long, default_value_t = 1)]
    label_class: u16,
    /// Output model file (.json).
    #[arg(long, short)]
    out: PathBuf,
    /// Model name (default: the output file's stem).
    #[arg(long)]
    name: Option<String>,
    /// Standardise features (mean 0, unit variance over the training rows); the model stores
    /// the mean and scale.
    #[arg(long)]
    standardize: bool,
    /// L2 penalty on the weights (not the bias).
    #[arg(long, default_value_t = 1.0)]
    l2: f64,
    /// Most Newton iterations.
    #[arg(long, default_value_t = 100)]
    iterations: usize,
    /// Hold out every K-th event (K-1, 2K-1, ...) from the fit and report metrics on them.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(2..))]
    holdout_every: Option<u64>,
}

/// Event-time flags shared by `strix replay` and `strix sweep`.
#[derive(Args, Debug)]
struct TimeArgs {
    /// Bounded out-of-orderness: events may arrive up to DUR behind the latest one and are put
    /// back in time order (e.g. 500ms, 2s). `TYPE=DUR` makes TYPE a source with its own bound;
    /// repeatable. Default 0: the tape is in time order.
    #[arg(
        long = "max-delay",
        value_name = "[TYPE=]DUR",
        allow_hyphen_values = true
    )]
    max_delay: Vec<String>,
    /// Allowed lateness: events up to DUR behind the watermark are still matched.
    #[arg(long, value_name = "DUR", allow_hyphen_values = true)]
    allowed_lateness: Option<String>,
    /// Drop duplicate events: same value of this field (per type) within --dedup-horizon.
    #[arg(long, value_name = "FIELD", requires = "dedup_horizon")]
    dedup: Option<String>,
    /// Event-time horizon of --dedup (e.g. 1m).
    #[arg(
        long,
        value_name = "DUR",
        requires = "dedup",
        allow_hyphen_values = true
    )]
    dedup_horizon: Option<String>,
}

#[derive(Debug, Args)]
struct ReplayArgs {
    /// Rule file (.cep).
    #[arg(long)]
    rules: PathBuf,
    /// Tape to replay.
    #[arg(long)]
    tape: PathBuf,
    /// Write signals here instead of stdout.
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Print the report as one JSON object on stdout (signals then go to --out, or nowhere).
    #[arg(long)]
    json: bool,
    /// Cap of live partial matches per partition key (the oldest are evicted and counted).
    #[arg(long, default_value_t = 10_000)]
    max_runs_per_key: usize,
    #[command(flatten)]
    time: TimeArgs,
    /// Write late events (behind the watermark by more than the allowed lateness) here as JSON
    /// Lines, as `strix tape export --format jsonl` writes them. They are counted either way.
    #[arg(long, value_name = "FILE")]
    late_out: Option<PathBuf>,
    /// Matcher of every rule: `fast` skips events that provably change no state, `reference` is
    /// the plain semantic oracle. Both give the same signals, byte for byte.
    #[arg(long, value_enum, default_value_t = MatcherArg::Fast)]
    matcher: MatcherArg,
    /// Shard threads: each runs the rules on its share of the partition keys, fed by a feed
    /// thread, with a sink thread merging their signals in a fixed order. 0 runs everything
    /// inline on the calling thread. The signals are the same for every shard count.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=256))]
    shards: u32,
    /// Rows per batch: events go to the engine (and to every shard) N at a time. Larger batches
    /// cost less per event, smaller ones wait less. The signals are the same for every size.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    batch: u32,
    /// Offered load: feed the tape at EVENTS_PER_S events per second (event i is due i / rate
    /// after the start) instead of as fast as possible. Latency is then measured from each
    /// event's due time, so a stall shows up in every event it delays.
    #[arg(long, value_name = "EVENTS_PER_S", value_parser = clap::value_parser!(u64).range(1..))]
    rate: Option<u64>,
    /// Do not pin the pipeline threads to cores. By default the feed, each shard and the sink
    /// get a core of their own when there are enough cores (else nothing is pinned).
    #[arg(long)]
    no_pin: bool,
    /// Directory of models named bare in `score using NAME` (NAME.json; default: the rules
    /// file's directory). Quoted model paths are relative to the rules file.
    #[arg(long, value_name = "DIR")]
    models: Option<PathBuf>,
    /// Where `score using` models run: `auto` (a real GPU for batches of at least
    /// --score-min-gpu-batch rows, else the CPU), `gpu` (always; error without an adapter) or
    /// `cpu`.
    #[arg(long, value_enum, default_value_t = ScoreDeviceArg::Auto)]
    score_device: ScoreDeviceArg,
    /// Signals scored per model call: scored signals (and those after them) are held until this
    /// many are pending or the tape ends. The output is the same for every size.
    #[arg(long, value_name = "N", default_value_t = strix::scoring::DEFAULT_SCORE_BATCH as u32, value_parser = clap::value_parser!(u32).range(1..))]
    score_batch: u32,
    /// With --score-device auto, calls with fewer rows run on the CPU.
    #[arg(long, value_name = "N", default_value_t = gpu_kernels::score::DEFAULT_MIN_GPU_BATCH)]
    score_min_gpu_batch: usize,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ScoreDeviceArg {
    /// A real GPU for large batches, else the CPU.
    Auto,
    /// Always the GPU (a CPU driver such as lavapipe counts).
    Gpu,
    /// Always the CPU.
    Cpu,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum MatcherArg {
    /// Skips events that cannot change any partial match (the default).
    Fast,
    /// The reference matcher: every event through the plain algorithm.
    Reference,
}

#[derive(Debug, Subcommand)]
enum TapeCommand {
    /// Import CSV or LOBSTER message files into a tape.
    Import(Box<ImportArgs>),
    /// Print a tape's header: schemas, event count, counts per type, time span.
    Info {
        /// Tape.
        file: PathBuf,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
        /// Also verify every block checksum.
        #[arg(long)]
        verify: bool,
    },
    /// Write a tape's events as CSV or JSON Lines (seq, type, ts, fields, labels).
    Export {
        /// Tape.
        file: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ExportFormatArg::Csv)]
        format: ExportFormatArg,
        /// Output file (default stdout).
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ExportFormatArg {
    Csv,
    Jsonl,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq)]
enum ImportFormat {
    /// CSV with a header row naming the fields of one event type (needs --schema and --type).
    Csv,
    /// LOBSTER message file (.csv or the sample .zip).
    Lobster,
}

#[derive(Debug, Args)]
struct ImportArgs {
    /// Input format.
    #[arg(long, value_enum)]
    format: ImportFormat,
    /// CSV: rule file whose event declarations give the schema.
    #[arg(long)]
    schema: Option<PathBuf>,
    /// CSV: event type of every row.
    #[arg(long = "type")]
    type_name: Option<String>,
    /// CSV: column holding event time.
    #[arg(long, default_value = "ts")]
    time_field: String,
    /// CSV: unit of the time column (ns, us, ms, s).
    #[arg(long, default_value = "ns")]
    time_unit: String,
    /// CSV: added to every event time: ns since the UNIX epoch, or a UTC date YYYY-MM-DD or
    /// YYYY-MM-DDTHH:MM:SS (for time columns that count from a start of their own).
    #[arg(long, value_name = "NS|DATE", allow_hyphen_values = true)]
    time_base: Option<String>,
    /// CSV: write the rows in time order (stable: equal times keep file order). Without it rows
    /// keep file order and an unsorted file needs `strix replay --max-delay`.
    #[arg(long)]
    sort_by_time: bool,
    /// CSV: integer column with the ground-truth label class (0 = none).
    #[arg(long)]
    label_field: Option<String>,
    /// CSV: names of the label classes 0, 1, 2, ... (default `none,positive`). A rule is scored
    /// against the class named like its signal (e.g. `none,fraud` for `emit fraud`).
    #[arg(
        long,
        value_name = "NAMES",
        value_delimiter = ',',
        requires = "label_field"
    )]
    label_names: Vec<String>,
    /// CSV: injected instances of labelled rows: `row` makes each labelled row an instance of
    /// its own (recall = share of labelled rows found), `shared` puts all in instance 0.
    #[arg(long, value_enum, default_value_t = LabelInstancesArg::Row)]
    label_instances: LabelInstancesArg,
    /// LOBSTER: ticker symbol of the file.
    #[arg(long)]
    symbol: Option<String>,
    /// LOBSTER: trading date YYYY-MM-DD (default: taken from the file name).
    #[arg(long)]
    date: Option<String>,
    /// Input file.
    input: PathBuf,
    /// Output tape.
    #[arg(long, short)]
    out: PathBuf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LabelInstancesArg {
    /// Each labelled row is an instance of its own.
    Row,
    /// Every labelled row is instance 0 (one instance per class).
    Shared,
}

#[derive(Debug, Subcommand)]
enum GenCommand {
    /// Orders, cancels and trades with injected layering and momentum bursts.
    Market(GenArgs),
    /// Card transactions with injected card testing and velocity fraud.
    Cards(GenArgs),
    /// Last trade prices of thousands of instruments (DEBS 2022 Grand Challenge schema).
    Ticks(TicksArgs),
}

#[derive(Debug, Args)]
struct GenArgs {
    /// Number of events.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Random seed (same seed, same tape).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Output tape.
    #[arg(long, short)]
    out: PathBuf,
}

#[derive(Debug, Args)]
struct TicksArgs {
    #[command(flatten)]
    common: GenArgs,
    /// Number of instruments (Zipf-skewed activity: a few trade often, most rarely).
    #[arg(long, default_value_t = feeds::r#gen::ticks::DEFAULT_TICK_SYMBOLS)]
    symbols: u32,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        // A closed pipe (`strix tape export ... | head`) is the reader's choice, not a failure.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = error_chain(&e);
            // Rule diagnostics render their own `error:` header.
            if msg.starts_with("error:") {
                eprintln!("{msg}")
            } else {
                eprintln!("error: {msg}")
            }
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.to_string().contains("Broken pipe")
    })
}

/// The error and its causes, leaving out causes whose text the message already includes.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !out.contains(&c) {
            out.push_str(": ");
            out.push_str(&c);
        }
    }
    out
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Check { files } => check(&files),
        Command::Explain { file, dot } => explain(&file, dot).map(|()| ExitCode::SUCCESS),
        Command::Replay(args) => run_replay(&args).map(|()| ExitCode::SUCCESS),
        Command::Tape(TapeCommand::Import(args)) => import(&args).map(|()| ExitCode::SUCCESS),
        Command::Tape(TapeCommand::Info { file, json, verify }) => {
            info(&file, json, verify).map(|()| ExitCode::SUCCESS)
        }
        Command::Tape(TapeCommand::Export { file, format, out }) => {
            export(&file, format, out.as_deref()).map(|()| ExitCode::SUCCESS)
        }
        Command::Gen(GenCommand::Market(args)) => {
            generate(&args, Generator::Market, None).map(|()| ExitCode::SUCCESS)
        }
        Command::Gen(GenCommand::Cards(args)) => {
            generate(&args, Generator::Cards, None).map(|()| ExitCode::SUCCESS)
        }
        Command::Gen(GenCommand::Ticks(args)) => {
            generate(&args.common, Generator::Ticks, Some(args.symbols)).map(|()| ExitCode::SUCCESS)
        }
        Command::Sweep(args) => run_sweep(&args).map(|()| ExitCode::SUCCESS),
        Command::Model(ModelCommand::Fit(args)) => fit_model(&args).map(|()| ExitCode::SUCCESS),
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn check(files: &[PathBuf]) -> Result<ExitCode> {
    let mut failed = 0;
    for f in files {
        let src = read(f)?;
        let mut symbols = SymbolTable::new();
        match strix::pattern_lang::compile(&src, None, &mut symbols) {
            Ok(p) => println!("{}: ok ({})", f.display(), counts(&p)),
            Err(d) => {
                failed += 1;
                eprintln!("{}", d.render(&f.display().to_string(), &src));
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `N` followed by `one` or `many`.
fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// What a program declares: `2 event types (1 derived), 1 query, 2 rules`.
fn counts(p: &Program) -> String {
    let types = p.catalog.types().len();
    let derived = (0..types)
        .filter(|&t| u16::try_from(t).is_ok_and(|t| p.catalog.is_derived(t)))
        .count();
    let mut s = plural(types, "event type", "event types");
    if derived > 0 {
        s.push_str(&format!(" ({derived} derived)"));
    }
    format!(
        "{s}, {}, {}",
        plural(p.queries.len(), "query", "queries"),
        plural(p.rules.len(), "rule", "rules")
    )
}

/// The names of `types`, each derived one followed by the query that emits it.
fn type_names(program: &Program, types: &[strix::cep_core::schema::TypeId]) -> String {
    let names: Vec<String> = types
        .iter()
        .filter_map(|&t| {
            let name = &program.catalog.event_type(t)?.name;
            Some(match program.queries.iter().find(|q| q.output == t) {
                Some(q) => format!("{name} (derived by query {})", q.name),
                None => name.clone(),
            })
        })
        .collect();
    names.join(", ")
}

/// The text of `strix explain` for one query.
fn explain_query(
    out: &mut impl Write,
    program: &Program,
    symbols: &SymbolTable,
    query: &strix::cep_core::query::Query,
) -> Result<()> {
    let expr = ExprDisplay {
        vars: &[],
        symbols: Some(symbols),
        catalog: Some(&program.catalog),
    };
    let disp = WindowExprDisplay { query, expr };
    let output = program
        .catalog
        .event_type(query.output)
        .map_or("?", |t| t.name.as_str());
    writeln!(out, "query {}  (derived events `{output}`)", query.name)?;
    writeln!(out, "  reads      {}", type_names(program, &query.from))?;
    writeln!(
        out,
        "  where      {}",
        query
            .filter
            .as_ref()
            .map_or("(none: every event)".into(), |f| expr.render(f))
    )?;
    let groups: Vec<&str> = query.group_by.iter().map(|f| f.name.as_str()).collect();
    writeln!(
        out,
        "  group by   {}",
        if groups.is_empty() {
            "(none: one group)".into()
        } else {
            groups.join(", ")
        }
    )?;
    writeln!(out, "  window     {}", query.window)?;
    writeln!(
        out,
        "  having     {}",
        query
            .having
            .as_ref()
            .map_or("(none: every window)".into(), |h| disp.render(h))
    )?;
    writeln!(out, "  emit {output} {{")?;
    for f in &query.emit {
        writeln!(
            out,
            "    {}: {} = {}",
            f.name,
            program.catalog.type_name(f.ty),
            disp.render(&f.expr)
        )?;
    }
    writeln!(out, "  }}")?;
    writeln!(out)?;
    Ok(())
}

fn explain(file: &Path, dot: bool) -> Result<()> {
    let src = read(file)?;
    let mut symbols = SymbolTable::new();
    let program = strix::pattern_lang::compile(&src, None, &mut symbols)
        .map_err(|d| anyhow::anyhow!("{}", d.render(&file.display().to_string(), &src)))?;
    let out = &mut std::io::stdout().lock();
    if !dot {
        for q in &program.queries {
            explain_query(out, &program, &symbols, q)?;
        }
    }
    for rule in &program.rules {
        let nfa = &rule.nfa;
        let names: Vec<String> = nfa.vars.iter().map(|v| v.name.clone()).collect();
        let disp = ExprDisplay {
            vars: &names,
            symbols: Some(&symbols),
            catalog: Some(&program.catalog),
        };
        let contiguity = |c: Contiguity| match c {
            Contiguity::Strict => "strict",
            Contiguity::Relaxed => "relaxed (skip till next)",
            Contiguity::Any => "any (skip till any)",
        };
        let target = |t: &Target| match t {
            Target::State(s) => format!("s{s}"),
            Target::Accept => "ACCEPT".into(),
        };
        // An edge that crossed negations shows them: `s2 unless !x`, `ACCEPT at deadline unless !p`.
        let edge = |e: &Edge| {
            let mut s = target(&e.target);
            if e.is_absence() {
                s.push_str(" at deadline");
            }
            for (i, g) in e.guards.iter().enumerate() {
                s.push_str(if i == 0 { " unless " } else { ", " });
                s.push_str(if g.strict { "next is " } else { "any " });
                s.push('!');
                s.push_str(&names[g.var as usize]);
            }
            s
        };
        let state_label = |i: usize| {
            let s = &nfa.states[i];
            let var = &names[s.var as usize];
            if s.looping {
                format!("{var}[{}+]", s.repetition)
            } else {
                format!("{var}[{}]", s.repetition)
            }
        };
        if dot {
            writeln!(
                out,
                "digraph \"{}\" {{\n  rankdir=LR;\n  start [shape=point];\n  ACCEPT [shape=doublecircle];",
                rule.name
            )?;
            for (i, s) in nfa.states.iter().enumerate() {
                writeln!(
                    out,
                    "  s{i} [shape=circle, label=\"{}\\n{}\"];",
                    state_label(i),
                    contiguity(s.contiguity)
                )?;
            }
            for t in &nfa.start {
                writeln!(out, "  start -> {};", target(t))?;
            }
            for (i, s) in nfa.states.iter().enumerate() {
                let cond = disp
                    .render(&nfa.vars[s.var as usize].condition)
                    .replace('"', "\\\"");
                for (rank, e) in s.next.iter().enumerate() {
                    writeln!(
                        out,
                        "  s{i} -> {} [label=\"take: {cond}\\npreference {}{}\"];",
                        target(&e.target),
                        rank + 1,
                        edge(e)
                            .strip_prefix(&target(&e.target))
                            .map(str::trim)
                            .filter(|g| !g.is_empty())
                            .map_or(String::new(), |g| format!("\\n{g}"))
                    )?;
                }
            }
            writeln!(out, "}}")?;
            continue;
        }
        writeln!(out, "rule {}  (signal `{}`)", rule.name, rule.emit.signal)?;
        writeln!(out, "  reads      {}", type_names(&program, &rule.from))?;
        let part: Vec<&str> = rule.partition_by.iter().map(|f| f.name.as_str()).collect();
        writeln!(
            out,
            "  partition  {}",
            if part.is_empty() {
                "(none: one partition)".into()
            } else {
                part.join(", ")
            }
        )?;
        writeln!(out, "  pattern    {}", nfa.pattern_text())?;
        writeln!(
            out,
            "  within     {}",
            nfa.within.map_or("(unbounded)".into(), format_duration)
        )?;
        writeln!(
            out,
            "  select     {}",
            match nfa.selection {
                Selection::All => "all (every match)",
                Selection::First => "first (preferred match per start event)",
            }
        )?;
        let skip = match nfa.after_match {
            AfterMatch::NoSkip => "no skip".to_string(),
            AfterMatch::ToNext => "skip to next".into(),
            AfterMatch::PastLast => "skip past last".into(),
            AfterMatch::ToFirst(v) => format!("skip to first {}", names[v as usize]),
            AfterMatch::ToLast(v) => format!("skip to last {}", names[v as usize]),
        };
        writeln!(out, "  after      {skip}")?;
        writeln!(out, "  conditions")?;
        for v in &nfa.vars {
            writeln!(out, "    {:<10} {}", v.name, disp.render(&v.condition))?;
        }
        writeln!(
            out,
            "  states ({}), start -> {}",
            nfa.states.len(),
            nfa.start.iter().map(target).collect::<Vec<_>>().join(" | ")
        )?;
        for (i, s) in nfa.states.iter().enumerate() {
            writeln!(
                out,
                "    s{i:<3} takes {:<12} waits {:<26} then {}",
                state_label(i),
                contiguity(s.contiguity),
                s.next.iter().map(edge).collect::<Vec<_>>().join(" | ")
            )?;
        }
        if !rule.emit.fields.is_empty() {
            writeln!(out, "  emit {} {{", rule.emit.signal)?;
            for f in &rule.emit.fields {
                writeln!(out, "    {}: {}", f.name, disp.render(&f.expr))?;
            }
            writeln!(out, "  }}")?;
        }
        if let Some(score) = &rule.emit.score {
            let source = match &score.source {
                ScoreSource::Expr(e) => disp.render(e),
                ScoreSource::Model(m) if m.is_path => format!("using \"{}\"", m.name),
                ScoreSource::Model(m) => format!("using {}", m.name),
            };
            match score.threshold {
                Some(t) => writeln!(out, "  score {source} threshold {t}")?,
                None => writeln!(out, "  score {source}")?,
            }
        }
        if let Some(t) = &rule.timeout {
            writeln!(out, "  on timeout emit {} {{", t.signal)?;
            for f in &t.fields {
                writeln!(out, "    {}: {}", f.name, disp.render(&f.expr))?;
            }
            writeln!(out, "  }}")?;
        }
        writeln!(out)?;
    }
    Ok(())
}

fn progress_bar(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:40}] {human_pos}/{human_len} events ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

/// The event-time options of `strix replay` and `strix sweep`.
fn time_options(args: &TimeArgs) -> Result<TimeOptions> {
    let mut time = TimeOptions::default();
    let mut default_given = false;
    for spec in &args.max_delay {
        match spec.split_once('=') {
            Some((ty, dur)) => {
                let ty = ty.trim();
                if ty.is_empty() {
                    bail!("--max-delay {spec}: the type name before `=` is missing");
                }
                let d = parse_duration(dur).with_context(|| format!("--max-delay {spec}"))?;
                time.max_delay_per_type.push((ty.to_string(), d));
            }
            None => {
                if default_given {
                    bail!(
                        "--max-delay without a type given twice; use TYPE=DUR for per-type bounds"
                    );
                }
                default_given = true;
                time.max_delay = parse_duration(spec).context("--max-delay")?;
            }
        }
    }
    if let Some(l) = &args.allowed_lateness {
        time.allowed_lateness = parse_duration(l).context("--allowed-lateness")?;
    }
    if let (Some(field), Some(h)) = (&args.dedup, &args.dedup_horizon) {
        time.dedup = Some(DedupOptions {
            field: field.clone(),
            horizon: parse_duration(h).context("--dedup-horizon")?,
        });
    }
    Ok(time)
}

fn run_replay(args: &ReplayArgs) -> Result<()> {
    let opts = ReplayOptions {
        rules: args.rules.clone(),
        tape: args.tape.clone(),
        max_runs_per_key: args.max_runs_per_key,
        time: time_options(&args.time)?,
    };
    let run = RunOptions {
        matcher: match args.matcher {
            MatcherArg::Fast => MatcherKind::Fast,
            MatcherArg::Reference => MatcherKind::Reference,
        },
        shards: args.shards,
        batch: args.batch as usize,
        rate: args.rate,
        pin: !args.no_pin,
        score: ScoreRun {
            models_dir: args.models.clone(),
            device: match args.score_device {
                ScoreDeviceArg::Auto => ScoreDevice::Auto,
                ScoreDeviceArg::Gpu => ScoreDevice::Gpu,
                ScoreDeviceArg::Cpu => ScoreDevice::Cpu,
            },
            batch: args.score_batch as usize,
            min_gpu_batch: args.score_min_gpu_batch,
        },
        ..RunOptions::default()
    };
    let mut late: Option<Box<dyn Write + Send>> = match &args.late_out {
        Some(p) => Some(Box::new(BufWriter::new(
            File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        ))),
        None => None,
    };
    let mut sink: Box<dyn Write + Send> = match (&args.out, args.json) {
        (Some(p), _) => Box::new(BufWriter::new(
            File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        (None, true) => Box::new(std::io::sink()),
        (None, false) => Box::new(BufWriter::new(std::io::stdout())),
    };
    let bar = progress_bar(0, "replay");
    let report = replay_run(
        &opts,
        &run,
        &mut sink,
        late.as_mut().map(|w| w as &mut (dyn Write + Send)),
        &mut |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        },
    );
    bar.finish_and_clear();
    let report = report?;
    drop(sink);
    drop(late);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else if args.out.is_some() {
        print!("{}", report.render());
    } else {
        // Signals went to stdout: keep the report apart on stderr.
        eprint!("{}", report.render());
    }
    Ok(())
}

fn import(args: &ImportArgs) -> Result<()> {
    let mut symbols = SymbolTable::new();
    let stats = match args.format {
        ImportFormat::Lobster => {
            let symbol = args
                .symbol
                .as_deref()
                .context("--symbol is required for --format lobster (e.g. --symbol AAPL)")?;
            let catalog = feeds::lobster::lobster_catalog();
            let mut w = TapeWriter::create(
                &args.out,
                &catalog,
                &["none".to_string()],
                &format!("lobster {} {}", symbol, args.input.display()),
            )?;
            let stats = feeds::lobster::import_lobster(
                &args.input,
                symbol,
                args.date.as_deref(),
                &mut w,
                &mut symbols,
            )?;
            w.finish(&symbols)?;
            stats
        }
        ImportFormat::Csv => {
            let schema = args
                .schema
                .as_ref()
                .context("--schema FILE.cep is required for --format csv")?;
            let type_name = args
                .type_name
                .as_deref()
                .context("--type NAME is required for --format csv")?;
            let src = read(schema)?;
            let file = strix::pattern_lang::parse_file(&src).map_err(|d| {
                anyhow::anyhow!("{}", d.render(&schema.display().to_string(), &src))
            })?;
            let program =
                strix::pattern_lang::lower_file(&file, None, &mut symbols).map_err(|d| {
                    anyhow::anyhow!("{}", d.render(&schema.display().to_string(), &src))
                })?;
            let catalog = program.catalog;
            if catalog.type_by_name(type_name).is_none() {
                bail!("{} declares no event type `{type_name}`", schema.display());
            }
            let unit = match args.time_unit.as_str() {
                "ns" => feeds::csv_import::TimeUnit::Ns,
                "us" => feeds::csv_import::TimeUnit::Us,
                "ms" => feeds::csv_import::TimeUnit::Ms,
                "s" => feeds::csv_import::TimeUnit::S,
                other => bail!("--time-unit must be ns, us, ms or s, not `{other}`"),
            };
            let opts = feeds::csv_import::CsvOptions {
                time_field: args.time_field.clone(),
                time_unit: unit,
                label_field: args.label_field.clone(),
            };
            let labels: Vec<String> = if args.label_names.is_empty() {
                if args.label_field.is_some() {
                    vec!["none".into(), "positive".into()]
                } else {
                    vec!["none".into()]
                }
            } else {
                if args.label_names.len() < 2 || args.label_names.iter().any(|n| n.is_empty()) {
                    bail!(
                        "--label-names names classes 0, 1, ...: give at least two non-empty names (e.g. none,fraud)"
                    );
                }
                args.label_names.clone()
            };
            let rows = feeds::csv_import::CsvRowOptions {
                time_base_ns: match &args.time_base {
                    Some(b) => feeds::csv_import::parse_time_base(b)
                        .map_err(|e| anyhow::anyhow!("--time-base: {e}"))?,
                    None => 0,
                },
                sort_by_time: args.sort_by_time,
                instances: match args.label_instances {
                    LabelInstancesArg::Row => feeds::csv_import::LabelInstances::PerRow,
                    LabelInstancesArg::Shared => feeds::csv_import::LabelInstances::Shared,
                },
            };
            let mut w = TapeWriter::create(
                &args.out,
                &catalog,
                &labels,
                &format!("csv {}", args.input.display()),
            )?;
            let stats = feeds::csv_import::import_csv_rows(
                &args.input,
                &catalog,
                type_name,
                &opts,
                &rows,
                &mut w,
                &mut symbols,
            )?;
            w.finish(&symbols)?;
            stats
        }
    };
    println!(
        "imported {} events into {}",
        stats.events,
        args.out.display()
    );
    for (t, n) in &stats.per_type {
        println!("  {t:<16} {n}");
    }
    if !stats.ignored_columns.is_empty() {
        println!("  ignored columns: {}", stats.ignored_columns.join(", "));
    }
    Ok(())
}

fn info(file: &Path, json: bool, verify: bool) -> Result<()> {
    let tape = TapeReader::open(file)?;
    if verify {
        tape.verify()?;
    }
    let info = tape.info();
    let catalog = tape.catalog();
    if json {
        let types: Vec<serde_json::Value> = catalog
            .types()
            .iter()
            .enumerate()
            .map(|(i, t)| {
                serde_json::json!({
                    "name": t.name,
                    "count": info.counts_per_type.get(i).copied().unwrap_or(0),
                    "fields": t.fields.iter().map(|f| serde_json::json!({"name": f.name, "type": catalog.type_name(f.ty)})).collect::<Vec<_>>(),
                })
            })
            .collect();
        let v = serde_json::json!({
            "path": file.display().to_string(),
            "version": info.version,
            "events": info.event_count,
            "blocks": info.block_count,
            "bytes": info.file_size,
            "first_ts": info.first_ts,
            "last_ts": info.last_ts,
            "labels": tape.has_labels().then(|| tape.label_names().to_vec()),
            "symbols": tape.symbols().len(),
            "source": info.source,
            "types": types,
            "verified": verify,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "tape      {} (format v{}, {} bytes, {} blocks)",
        file.display(),
        info.version,
        info.file_size,
        info.block_count
    );
    println!("source    {}", info.source);
    println!("events    {}", info.event_count);
    if let (Some(a), Some(b)) = (info.first_ts, info.last_ts) {
        println!(
            "time      {} .. {} ({:.3} s)",
            fmt_ts(a),
            fmt_ts(b),
            (b - a) as f64 / 1e9
        );
    }
    println!("symbols   {}", tape.symbols().len());
    if tape.has_labels() {
        println!("labels    {}", tape.label_names().join(", "));
    }
    println!("types");
    for (i, t) in catalog.types().iter().enumerate() {
        let fields: Vec<String> = t
            .fields
            .iter()
            .map(|f| format!("{}: {}", f.name, catalog.type_name(f.ty)))
            .collect();
        println!(
            "  {:<14} {:>12}   {{ {} }}",
            t.name,
            info.counts_per_type.get(i).copied().unwrap_or(0),
            fields.join(", ")
        );
    }
    if verify {
        println!("verified  every block checksum");
    }
    Ok(())
}

/// Formats ns since the epoch as an ISO-8601 UTC time.
fn fmt_ts(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let frac = ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (H. Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn export(file: &Path, format: ExportFormatArg, out: Option<&Path>) -> Result<()> {
    let tape = TapeReader::open(file)?;
    let mut w: Box<dyn Write> = match out {
        Some(p) => Box::new(BufWriter::new(
            File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    let fmt = match format {
        ExportFormatArg::Csv => feeds::export::ExportFormat::Csv,
        ExportFormatArg::Jsonl => feeds::export::ExportFormat::Jsonl,
    };
    let n = feeds::export::export(&tape, fmt, &mut w)?;
    w.flush()?;
    if out.is_some() {
        eprintln!("exported {n} events");
    }
    Ok(())
}

/// `strix gen KIND`; `symbols` overrides the spec's default population of symbols.
fn generate(args: &GenArgs, generator: Generator, symbols: Option<u32>) -> Result<()> {
    let mut spec = feeds::r#gen::GenSpec::new(args.events, args.seed);
    if let Some(n) = symbols {
        spec.symbols = n;
    }
    let bar = progress_bar(args.events, &format!("gen {}", generator.name()));
    let started = std::time::Instant::now();
    let (generated, info) =
        feeds::r#gen::write_tape(generator, &spec, &args.out, &mut |n| bar.set_position(n))?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "wrote {} events to {} in {:.2} s ({:.1} M events/s)",
        info.event_count,
        args.out.display(),
        secs,
        info.event_count as f64 / secs.max(1e-9) / 1e6
    );
    for (class, n) in &generated.injected {
        println!("  injected {class}: {n} instances");
    }
    if generator == Generator::Ticks
        && let (Some(first), Some(last)) = (info.first_ts, info.last_ts)
    {
        println!(
            "  {} symbols over {:.1} h of event time (sessions 08:00-16:30 UTC, weekdays)",
            generated.symbols.len(),
            (last - first) as f64 / 3.6e12
        );
    }
    Ok(())
}

/// `strix sweep`: the rule file declares `param NAME = LITERAL` items used as `$NAME`; every
/// combination of the swept values is one variant.
#[derive(Debug, Args)]
#[command(after_long_help = SWEEP_HELP)]
struct SweepArgs {
    /// Rule file (.cep) declaring the parameters (`param n = 5`, `param w = 10m`, ...).
    #[arg(long)]
    rules: PathBuf,
    /// Labelled tape (e.g. from `strix gen cards`): variants are scored against its labels.
    #[arg(long)]
    tape: PathBuf,
    /// Rule or query to sweep (default: the file's only rule or query).
    #[arg(long, value_name = "NAME")]
    rule: Option<String>,
    /// A parameter and its values: a list `NAME=a,b,c` or an inclusive range
    /// `NAME=START..END:STEP` (`n=2..9:1`, `w=1m..20m:1m`, `x=0.5..2:0.25`). Repeatable;
    /// variants are the cartesian product in flag order (at most 1,000,000). Parameters not
    /// given keep their declared default.
    #[arg(
        long = "param",
        value_name = "NAME=LIST|RANGE",
        allow_hyphen_values = true
    )]
    params: Vec<String>,
    /// Count on the GPU kernel; an error says why when the rule is not in a kernel class or no
    /// adapter is found.
    #[arg(long, conflicts_with = "cpu")]
    gpu: bool,
    /// Count on the kernel on one CPU core; rules in no kernel class run on the engine path.
    #[arg(long, conflicts_with = "engine")]
    cpu: bool,
    /// Count on the engine path (one engine per variant) even when a kernel could: the
    /// semantic reference the kernels are checked against.
    #[arg(long, conflicts_with = "gpu")]
    engine: bool,
    /// Print one JSON object with every variant instead of the table.
    #[arg(long)]
    json: bool,
    /// Rows of the table: the N best by F1 (0: all).
    #[arg(long, value_name = "N", default_value_t = 20)]
    top: usize,
    /// Also write the JSON object to FILE.
    #[arg(long, short, value_name = "FILE")]
    out: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    time: TimeArgs,
    /// Cap of live partial matches per partition key (engine path).
    #[arg(long, default_value_t = 10_000)]
    max_runs_per_key: usize,
    /// Directory of the models named by `score using NAME` (default: the rules file's).
    #[arg(long, value_name = "DIR")]
    models: Option<PathBuf>,
    /// Rows per batch pushed to the engines on the engine path.
    #[arg(long, value_name = "N", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    batch: u32,
}

const SWEEP_HELP: &str = "\
Example: sweep the probe count, the tiny-amount bound and the window of a card-testing rule
over a generated tape (5 x 4 x 4 = 80 variants):

  strix gen cards --events 200000 -o cards.tape
  strix sweep --rules examples/rules/cards_sweep.cep --tape cards.tape \\
      --param probes=3..7:1 --param tiny_max=1,1.5,2,3 --param window=5m..20m:5m

Paths: rules that are strict chains of single-event conditions, and count-threshold queries,
run as sweep kernels (--gpu: on the GPU; --cpu: on one CPU core; default: the GPU when there
is a hardware adapter, else the CPU; a CPU driver such as llvmpipe only with --gpu). Other rules run on the engine path: one engine per variant, all
fed from one pass over the tape. Every path gives the same counts.

Scoring: the rule is scored against the tape's label class named like its signal (else like
the rule). precision = true-positive signals / signals, recall = instances found / instances,
F1 = 2PR / (P + R). The table is sorted by F1, best first, ties by variant order.

Score thresholds: when the variants of a `score using MODEL threshold $t` rule differ only in
$t, the engine runs once, its signals are scored once (--gpu / --cpu pick the scoring device)
and each threshold counts the signals scoring at least $t.";

fn run_sweep(args: &SweepArgs) -> Result<()> {
    use strix::sweep::{DeviceChoice, Stage, SweepOptions};
    let opts = SweepOptions {
        rule: args.rule.clone(),
        device: if args.gpu {
            DeviceChoice::Gpu
        } else if args.cpu {
            DeviceChoice::Cpu
        } else if args.engine {
            DeviceChoice::Engine
        } else {
            DeviceChoice::Auto
        },
        time: time_options(&args.time)?,
        max_runs_per_key: args.max_runs_per_key,
        batch: args.batch as usize,
        models: args.models.clone(),
        ..SweepOptions::new(args.rules.clone(), args.tape.clone(), args.params.clone())
    };
    let bar = progress_bar(0, "sweep: reading");
    if args.quiet {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let mut stage = Stage::Reading;
    let report = strix::sweep::run_sweep(&opts, &mut |s, done, total| {
        if s != stage {
            stage = s;
            bar.set_message(match s {
                Stage::Reading => "sweep: reading",
                Stage::Engines => "sweep: engines",
                Stage::Kernel => "sweep: kernel",
            });
            bar.reset();
        }
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    let report = report?;
    if args.json || args.out.is_some() {
        let json = serde_json::to_string(&report)?;
        if let Some(p) = &args.out {
            std::fs::write(p, format!("{json}\n"))
                .with_context(|| format!("cannot write {}", p.display()))?;
        }
        if args.json {
            println!("{json}");
            return Ok(());
        }
    }
    print!("{}", report.render(args.top));
    Ok(())
}

/// `strix model fit`: fits, prints the fit's metrics and writes the model document.
fn fit_model(args: &FitArgs) -> Result<()> {
    use strix::fit::{FitOptions, Metrics, fit_logistic, read_dataset};
    let tape = TapeReader::open(&args.tape)?;
    let data = read_dataset(&tape, &args.type_name, &args.features, args.label_class)?;
    let holdout = args.holdout_every.map(|k| k as usize);
    let (train, hold) = data.split(holdout);
    let opts = FitOptions {
        standardize: args.standardize,
        l2: args.l2,
        iterations: args.iterations,
        ..FitOptions::default()
    };
    let started = std::time::Instant::now();
    let fit = fit_logistic(&train, &opts)?;
    let secs = started.elapsed().as_secs_f64();
    let name = match &args.name {
        Some(n) => n.clone(),
        None => args
            .out
            .file_stem()
            .map_or("model".into(), |s| s.to_string_lossy().into_owned()),
    };
    let model = fit.to_model(&name);
    std::fs::write(&args.out, model.to_json() + "\n")
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    let class = tape
        .label_names()
        .get(usize::from(args.label_class))
        .cloned()
        .unwrap_or_default();
    println!(
        "fitted logistic regression `{name}` on {} {} events ({} features, class {} = {class}) in {} Newton iterations{} ({secs:.3} s)",
        train.rows(),
        args.type_name,
        args.features.len(),
        args.label_class,
        fit.iterations,
        if fit.converged { "" } else { ", NOT converged" },
    );
    println!(
        "  l2 {}   standardize {}   model written to {}",
        args.l2,
        args.standardize,
        args.out.display()
    );
    let line = |what: &str, m: &Metrics| {
        let f = |x: Option<f64>| x.map_or("n/a".to_string(), |v| format!("{v:.4}"));
        println!(
            "  {what:<8} {:>8} rows ({} positive)   log-loss {:.5}   accuracy {:.4}   at 0.5: precision {}, recall {}",
            m.rows,
            m.positives,
            m.log_loss,
            m.accuracy,
            f(m.precision()),
            f(m.recall())
        );
    };
    line("training", &fit.metrics(&train));
    if hold.rows() > 0 {
        line("holdout", &fit.metrics(&hold));
    } else {
        println!("  (metrics on the training rows are optimistic: see --holdout-every)");
    }
    Ok(())
}
