//! The `tugboat` command: parse the CLI, load config, set up logs, wire adapters, run.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use tugboat::config::Config;
use tugboat::domain::image::{Digest, Repository, Tag};
use tugboat::engine::rescan::Scope;
use tugboat::engine::{Action, Engine, Mode};
use tugboat::telemetry::ApiMetrics;

#[derive(Parser)]
#[command(
    name = "tugboat",
    version,
    about = "Promote ECR images through GitOps pull requests, gated on scans, verified in Argo CD"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run reconcile cycles on the configured interval until SIGTERM or SIGINT.
    Run {
        #[arg(long, env = "TUGBOAT_CONFIG", default_value = "tugboat.toml")]
        config: PathBuf,
    },
    /// Run one reconcile cycle, publish the dashboard and send its notifications, print what
    /// happened, and exit: 1 if any step failed, 3 if every step ran but a notification or
    /// the dashboard was not delivered.
    Once {
        #[arg(long, env = "TUGBOAT_CONFIG", default_value = "tugboat.toml")]
        config: PathBuf,
        /// How long to wait for the notifications' deliveries (retries included); what is not
        /// delivered by then is reported, and the exit status is 3.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        notify_timeout: std::time::Duration,
    },
    /// Write a configuration and a starting policy from what Argo CD deploys from the GitOps
    /// repository: every ECR image reference tugboat can edit, grouped into services (one
    /// ECR repository each) and environments (one application each), and what it could not
    /// place, with why. Reads Argo CD and the repository; writes only the two local files.
    /// Any other key can be given by its TUGBOAT_* variable, and is written too.
    Init(InitCommand),
    /// Check everything a first cycle depends on: secrets, the policy in SSM, each ECR
    /// repository's scanning and tag mutability, GitHub's permissions and branch rules, each
    /// Argo CD application. One line each: ok, warning or error, the fact seen and the fix.
    /// Writes nothing. Exits 0 when all is ok, 1 on a warning, 2 on an error.
    Doctor(DoctorCommand),
    /// Show what would be promoted, blocked or waiting, and why. Writes nothing.
    Plan {
        #[arg(long, env = "TUGBOAT_CONFIG", default_value = "tugboat.toml")]
        config: PathBuf,
        /// `table` for people, `json` for machines.
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Rescan every deployed image now: fresh ECR findings, compared with the last rescan, kept
    /// in one security issue per service. Exits non-zero if anything could not be rescanned.
    Rescan {
        #[arg(long, env = "TUGBOAT_CONFIG", default_value = "tugboat.toml")]
        config: PathBuf,
        /// Only this service.
        #[arg(long)]
        service: Option<String>,
        /// Only this environment.
        #[arg(long)]
        env: Option<String>,
        /// Read the current findings and say what would change; start no scan, write no issue.
        #[arg(long)]
        dry_run: bool,
    },
    /// The whole story on this machine: sandbox stand-ins, six services, the real engine.
    #[cfg(feature = "sandbox")]
    Demo,
    /// Start the stand-ins on loopback, print their endpoints and a config, run until interrupted.
    #[cfg(feature = "sandbox")]
    Sandbox {
        /// Where to write the config file for `tugboat once --config`.
        #[arg(long, default_value = "tugboat-sandbox.toml")]
        write_config: PathBuf,
        /// Instead of the six salon services, seed N synthetic services (`svc-0000`, … in
        /// `dev`), e.g. to measure tugboat's memory and CPU on a large fleet.
        #[arg(long, value_name = "N")]
        synthetic: Option<usize>,
        /// Tags per synthetic service.
        #[arg(long, default_value_t = 100, requires = "synthetic")]
        tags: usize,
        /// How long the App's installation tokens live (GitHub: 1h); shorten it to live
        /// through several expiries, e.g. `--token-ttl 2m`.
        #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
        token_ttl: std::time::Duration,
        /// Authenticate with a plain token instead of as the sandbox's GitHub App.
        #[arg(long)]
        token_auth: bool,
    },
    /// Point every reference of REPOSITORY in FILE at TAG, changing only those bytes.
    SetImage {
        file: PathBuf,
        repository: String,
        tag: String,
        #[arg(long)]
        digest: Option<String>,
        /// Print a unified diff instead of writing the file.
        #[arg(long)]
        diff: bool,
    },
    /// Probe a running tugboat's /healthz (for a container HEALTHCHECK: no curl needed).
    /// Exits 0 when it answers 200 within the timeout, 1 otherwise.
    Health {
        #[arg(
            long,
            env = "TUGBOAT_HEALTH_URL",
            default_value = "http://127.0.0.1:8080/healthz"
        )]
        url: String,
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Validate promotion policy documents offline.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// The configuration: what is in effect and where it came from, and every key.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

/// `tugboat doctor`'s options.
#[derive(clap::Args)]
struct DoctorCommand {
    #[arg(long, env = "TUGBOAT_CONFIG", default_value = "tugboat.toml")]
    config: PathBuf,
    /// `table` for people, `json` for machines.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// Exit 0 on warnings too (an init container that should stop only on an error).
    #[arg(long)]
    allow_warnings: bool,
    /// Deliver a test notification to each sink (the one thing the doctor sends).
    #[arg(long)]
    send_test: bool,
}

/// `tugboat init`'s options.
#[derive(clap::Args)]
struct InitCommand {
    /// Argo CD's address.
    #[arg(long, value_name = "URL")]
    argocd: Option<String>,
    /// The GitOps repository.
    #[arg(long, value_name = "OWNER/NAME")]
    repo: Option<String>,
    /// Argo CD's token, by reference: env:NAME, file:PATH or ssm:/parameter
    /// [default: env:ARGOCD_AUTH_TOKEN].
    #[arg(long, value_name = "REF")]
    argocd_token: Option<String>,
    /// GitHub's token, by reference [default: env:GITHUB_TOKEN, unless
    /// TUGBOAT_GITHUB_APP_* name an App].
    #[arg(long, value_name = "REF")]
    github_token: Option<String>,
    /// Where to write the configuration.
    #[arg(long, default_value = "tugboat.toml")]
    config: PathBuf,
    /// Where to write the starting policy (to be stored in SSM).
    #[arg(long, default_value = "tugboat-policy.yaml")]
    policy: PathBuf,
    /// Print both files instead of writing them.
    #[arg(long)]
    dry_run: bool,
    /// Replace files that exist.
    #[arg(long)]
    force: bool,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration (the file with the TUGBOAT_* variables applied),
    /// each value with its origin: file, environment (which variable) or default. Secrets
    /// show only as their references. Reads nothing remote.
    Show {
        #[arg(long, env = "TUGBOAT_CONFIG", default_value = "tugboat.toml")]
        config: PathBuf,
    },
    /// List every configuration key: its environment variable, kind, default and meaning.
    Keys,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Check each FILE as one policy document (YAML or JSON).
    Check { files: Vec<PathBuf> },
}

fn init_logs(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::io::stderr().is_terminal() {
        builder.init();
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tugboat::abort_at_failpoint_from_env();
    tugboat::app::init_crypto();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    };
    // A git fetch or push still running on a blocking thread (its cycle was abandoned on
    // SIGTERM) gets a few seconds; the pod's grace period is 30 s. Abandoning one is safe: the
    // server applies a push whole or not at all, and the next cycle redoes the step.
    runtime.shutdown_timeout(std::time::Duration::from_secs(10));
    code
}

async fn dispatch(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        #[cfg(feature = "sandbox")]
        Command::Demo => {
            init_logs("error");
            tugboat_sandbox::demo::run(&mut std::io::stdout()).await?;
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(feature = "sandbox")]
        Command::Sandbox {
            write_config,
            synthetic,
            tags,
            token_ttl,
            token_auth,
        } => {
            init_logs("info");
            let fleet = match synthetic {
                Some(n) => tugboat_sandbox::Fleet::synthetic(n, tags),
                None => tugboat_sandbox::Fleet::salon(),
            };
            sandbox(&write_config, fleet, (!token_auth).then_some(token_ttl)).await
        }
        Command::SetImage {
            file,
            repository,
            tag,
            digest,
            diff,
        } => set_image(&file, &repository, &tag, digest.as_deref(), diff),
        Command::Policy {
            command: PolicyCommand::Check { files },
        } => policy_check(&files),
        Command::Health { url, timeout } => health(&url, timeout).await,
        Command::Config { command } => config_command(command),
        Command::Doctor(cmd) => {
            init_logs("error");
            doctor(cmd).await
        }
        Command::Init(cmd) => {
            init_logs("warn");
            init_command(cmd).await
        }
        Command::Once {
            config,
            notify_timeout,
        } => {
            init_logs("info");
            once(&config, Mode::Apply, Output::Table, notify_timeout).await
        }
        Command::Plan { config, output } => {
            init_logs("warn");
            once(&config, Mode::Plan, output, std::time::Duration::ZERO).await
        }
        Command::Run { config } => {
            init_logs("info");
            run(&config).await
        }
        Command::Rescan {
            config,
            service,
            env,
            dry_run,
        } => {
            init_logs("warn");
            rescan(
                &config,
                Scope {
                    service,
                    environment: env,
                    dry_run,
                },
            )
            .await
        }
    }
}

/// `tugboat config show` and `tugboat config keys`: they read no remote system.
fn config_command(command: ConfigCommand) -> anyhow::Result<ExitCode> {
    match command {
        ConfigCommand::Show { config } => {
            let layered = Config::load_layered(&config, std::env::vars())?;
            print!("{}", tugboat::config::show::show(&layered));
        }
        ConfigCommand::Keys => print!("{}", tugboat::config::show::keys()),
    }
    Ok(ExitCode::SUCCESS)
}

/// `tugboat doctor`: the findings, and an exit status that says the worst of them.
async fn doctor(cmd: DoctorCommand) -> anyhow::Result<ExitCode> {
    use tugboat::domain::doctor::{Finding, Level, exit_code, text};
    let findings = match Config::load(&cmd.config, std::env::vars()) {
        Ok(cfg) => tugboat::doctor::run(&cfg, cmd.send_test).await,
        Err(e) => vec![Finding::new(
            Level::Error,
            "config",
            cmd.config.display().to_string(),
            e.to_string(),
            "correct the configuration (`tugboat config show` shows what is in effect)",
        )],
    };
    match cmd.output {
        Output::Table => print!("{}", text(&findings)),
        Output::Json => println!("{:#}", tugboat::doctor::json(&findings)),
    }
    Ok(match exit_code(&findings) {
        1 if cmd.allow_warnings => ExitCode::SUCCESS,
        code => ExitCode::from(code),
    })
}

/// `tugboat init`: print what was found; write (or with `dry_run` print) the two files.
async fn init_command(cmd: InitCommand) -> anyhow::Result<ExitCode> {
    let (config, policy, dry_run) = (cmd.config.as_path(), cmd.policy.as_path(), cmd.dry_run);
    let args = tugboat::init::Args {
        argocd: cmd.argocd.clone(),
        repo: cmd.repo.clone(),
        argocd_token: cmd.argocd_token.clone(),
        github_token: cmd.github_token.clone(),
    };
    let init = tugboat::init::run(&args, std::env::vars().collect()).await?;
    print!("{}", tugboat::init::summary(&init));
    let Some(text) = &init.config else {
        println!("\nNo service found: nothing written.");
        return Ok(ExitCode::FAILURE);
    };
    if dry_run {
        println!("\n--- {} ---\n{text}", config.display());
        println!("--- {} ---\n{}", policy.display(), init.policy);
        return Ok(ExitCode::SUCCESS);
    }
    for path in [config, policy] {
        if path.exists() && !cmd.force {
            anyhow::bail!(
                "{} exists; give --force to replace it, or --dry-run to see what would be written",
                path.display()
            );
        }
    }
    std::fs::write(config, text).with_context(|| format!("writing {}", config.display()))?;
    std::fs::write(policy, &init.policy)
        .with_context(|| format!("writing {}", policy.display()))?;
    println!(
        "\nWrote {c} and {p}. Next:\n  tugboat policy check {p}\n  aws ssm put-parameter --name {param} --type String --value file://{p}\n  tugboat plan --config {c}",
        c = config.display(),
        p = policy.display(),
        param = init.policy_parameter,
    );
    Ok(ExitCode::SUCCESS)
}

fn load(config: &Path) -> anyhow::Result<Arc<Config>> {
    Ok(Arc::new(Config::load(config, std::env::vars())?))
}

/// What a `once` or a `plan` prints beside its table: the branch's rules and the write
/// budget (a plan), and what it told people (a `once`).
#[derive(Default)]
struct Extras {
    branch: Option<(tugboat::ports::BranchRules, Option<String>)>,
    cost: Option<tugboat::report::WriteCost>,
    told: Option<tugboat::once::Told>,
}

async fn once(
    config: &Path,
    mode: Mode,
    output: Output,
    notify_timeout: std::time::Duration,
) -> anyhow::Result<ExitCode> {
    let cfg = load(config)?;
    let api = ApiMetrics::default();
    let engine = Engine::new(cfg.clone(), tugboat::app::ports(&cfg, &api).await?);
    let reports = engine.cycle(mode).await?;
    let mut extras = Extras::default();
    match mode {
        // A plan says what the base branch requires of a merge, and what tugboat cannot
        // meet, and what its promotions would cost against GitHub's write budget.
        Mode::Plan => {
            extras.branch = match engine.branch_summary().await {
                Ok(summary) => Some(summary),
                Err(e) => {
                    eprintln!("warning: cannot read the base branch's rules: {e}");
                    None
                }
            };
            let github = &cfg.github;
            extras.cost = tugboat::report::WriteCost::of(
                &reports,
                github.writes_per_minute,
                github.writes_per_hour,
            );
        }
        // A run tells people what happened, as the daemon does after each cycle.
        Mode::Apply => {
            let clock = Arc::new(tugboat::clock::SystemClock);
            let told = tugboat::once::tell(&cfg, &engine, &reports, clock, notify_timeout).await?;
            extras.told = Some(told);
        }
    }
    emit(&printed(&reports, &extras, output))?;
    tugboat::daemon::log_calls(&api.snapshot());
    let failed = reports
        .iter()
        .any(|r| matches!(r.action, Action::Failed { .. }));
    let undelivered = extras.told.as_ref().is_some_and(|t| t.undelivered() > 0);
    Ok(if failed {
        ExitCode::FAILURE
    } else if undelivered {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

/// A cycle's reports and their extras, as `output` asks.
fn printed(reports: &[tugboat::engine::EnvReport], extras: &Extras, output: Output) -> String {
    match output {
        Output::Table => {
            let mut out = tugboat::report::table(reports);
            if let Some((rules, warning)) = &extras.branch {
                out = format!(
                    "{out}\n{}",
                    tugboat::report::branch_text(rules, warning.as_deref())
                );
            }
            if let Some(cost) = &extras.cost {
                out = format!("{out}\n{}", cost.text());
            }
            if let Some(told) = extras.told.as_ref().map(|t| t.text())
                && !told.is_empty()
            {
                out = format!("{out}\n{told}");
            }
            out
        }
        Output::Json => {
            let mut json = tugboat::report::json(reports);
            if let Some((rules, warning)) = &extras.branch {
                json["branch_rules"] = tugboat::report::branch_json(rules, warning.as_deref());
            }
            if let Some(cost) = &extras.cost {
                json["write_budget"] = cost.json();
            }
            if let Some(told) = &extras.told {
                json["told"] = told.json();
            }
            format!("{json:#}\n")
        }
    }
}

async fn rescan(config: &Path, scope: Scope) -> anyhow::Result<ExitCode> {
    let cfg = load(config)?;
    if let Some(name) = &scope.service
        && !cfg.services.iter().any(|s| s.name == *name)
    {
        let known: Vec<&str> = cfg.services.iter().map(|s| s.name.as_str()).collect();
        anyhow::bail!(
            "--service {name}: no such service in {}; configured: {}",
            cfg.source,
            known.join(", ")
        );
    }
    if let Some(env) = &scope.environment {
        let known: std::collections::BTreeSet<&str> = cfg
            .services
            .iter()
            .filter(|s| scope.service.as_ref().is_none_or(|n| *n == s.name))
            .flat_map(|s| s.environments.iter().map(|e| e.name.as_str()))
            .collect();
        if !known.contains(env.as_str()) {
            anyhow::bail!(
                "--env {env}: no such environment{}; configured: {}",
                scope
                    .service
                    .as_ref()
                    .map(|s| format!(" for service {s}"))
                    .unwrap_or_default(),
                known.into_iter().collect::<Vec<_>>().join(", ")
            );
        }
    }
    let api = ApiMetrics::default();
    let engine = Engine::new(cfg.clone(), tugboat::app::ports(&cfg, &api).await?);
    let report = engine.rescan(&scope).await?;
    emit(&tugboat::report::rescan_table(&report))?;
    tugboat::daemon::log_calls(&api.snapshot());
    Ok(if report.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Print a command's output; a reader that went away (`| head`) is not an error.
fn emit(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn run(config: &Path) -> anyhow::Result<ExitCode> {
    tugboat::daemon::run(load(config)?, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "sandbox")]
/// `app_token_ttl`: authenticate as the stand-in's GitHub App, its tokens living this long;
/// `None`: with a plain token.
async fn sandbox(
    write_config: &Path,
    fleet: tugboat_sandbox::Fleet,
    app_token_ttl: Option<std::time::Duration>,
) -> anyhow::Result<ExitCode> {
    let sb = tugboat_sandbox::Sandbox::start(tugboat_sandbox::Options {
        fleet,
        ..tugboat_sandbox::Options::default()
    })
    .await?;
    let work = sb.dir().join("tugboat-work");
    let config = match app_token_ttl {
        Some(ttl) => {
            sb.github.app.set_token_ttl(ttl);
            sb.config_toml_as_app(&work)
        }
        None => sb.config_toml(&work),
    };
    std::fs::write(write_config, config)
        .with_context(|| format!("writing {}", write_config.display()))?;
    println!(
        "tugboat sandbox is running on loopback:\n{}",
        sb.endpoints()
    );
    if let Some(ttl) = app_token_ttl {
        println!(
            "GitHub authenticates tugboat as the App {} (private key in the config's file); installation tokens live {}.\n",
            tugboat_sandbox::github_app::APP_ID,
            humantime::format_duration(ttl)
        );
    }
    println!(
        "Config written to {} — try:\n  tugboat plan --config {0}\n  tugboat once --config {0}",
        write_config.display()
    );
    let init = sb.init_command(&sb.dir().join("tugboat-init-work"));
    let (args, env) = (init.flags(), init.env);
    let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!(
        "\nOr write a configuration from what the Argo CD stand-in deploys:\n  {} \\\n    tugboat {}",
        env.join(" \\\n  "),
        args.join(" ")
    );
    println!(
        "\nPush an image from outside (AWS JSON protocol):\n  curl -s {}/ -H 'X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.PutImage' \\\n    -H 'Content-Type: application/x-amz-json-1.1' \\\n    -d '{{\"repositoryName\":\"user_service\",\"imageTag\":\"1.2.0\",\"imageManifest\":\"{{\\\"schemaVersion\\\":2,\\\"n\\\":1}}\"}}'",
        sb.aws_url
    );
    println!(
        "\nprod requires a cosign signature by the sandbox's CI key ({}):\n{}\nSeed an image signed by it, by another key, or not at all:\n  curl -s {}/_sandbox/ecr/images -H 'Content-Type: application/json' \\\n    -d '{{\"repository\":\"user_service\",\"tag\":\"1.3.0\",\"signature\":\"valid\"}}'   # or \"unknown-key\", \"none\"",
        tugboat_sandbox::CI_KEY_PARAMETER,
        sb.aws.ci_public_key().trim_end(),
        sb.aws_url
    );
    println!("\nPress Ctrl-C to stop.");
    std::io::stdout().flush()?;
    shutdown_signal().await;
    Ok(ExitCode::SUCCESS)
}

fn set_image(
    file: &Path,
    repository: &str,
    tag: &str,
    digest: Option<&str>,
    diff: bool,
) -> anyhow::Result<ExitCode> {
    let name = file.display().to_string();
    let repository = Repository::parse(repository)?;
    let tag = Tag::parse(tag)?;
    let digest = digest.map(Digest::parse).transpose()?;
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {name}"))?;
    let edited = tugboat::manifest::set_image(&text, &repository, &tag, digest.as_ref())
        .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    if edited.changes.is_empty() {
        println!("{name}: already at {repository}:{tag}; nothing changed");
        return Ok(ExitCode::SUCCESS);
    }
    if diff {
        let d = similar::TextDiff::from_lines(&text, &edited.text);
        print!("{}", d.unified_diff().header(&name, &name));
        return Ok(ExitCode::SUCCESS);
    }
    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file beside {name}"))?;
    tmp.write_all(edited.text.as_bytes())?;
    let perms = std::fs::metadata(file)?.permissions();
    std::fs::set_permissions(tmp.path(), perms)?;
    tmp.persist(file)
        .with_context(|| format!("replacing {name}"))?;
    for c in &edited.changes {
        println!("{name}:{}: {} -> {}", c.line, c.old, c.new);
    }
    Ok(ExitCode::SUCCESS)
}

fn policy_check(files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    if files.is_empty() {
        anyhow::bail!("name at least one policy file to check");
    }
    let mut ok = true;
    for f in files {
        let name = f.display().to_string();
        let body = std::fs::read_to_string(f).with_context(|| format!("reading {name}"))?;
        let doc = tugboat::domain::policy::PolicyDocument {
            name: name.clone(),
            version: 0,
            body,
        };
        match tugboat::domain::policy::parse_document(&doc) {
            Ok(_) => println!("{name}: ok"),
            Err(e) => {
                ok = false;
                println!("{e}");
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn health(url: &str, timeout: std::time::Duration) -> anyhow::Result<ExitCode> {
    let client = reqwest::Client::builder().timeout(timeout).build()?;
    match client.get(url).send().await {
        Ok(r) if r.status().is_success() => {
            println!("healthy: {url} answered {}", r.status().as_u16());
            Ok(ExitCode::SUCCESS)
        }
        Ok(r) => {
            println!("unhealthy: {url} answered {}", r.status().as_u16());
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            println!("unhealthy: {url}: {}", e.without_url());
            Ok(ExitCode::FAILURE)
        }
    }
}
