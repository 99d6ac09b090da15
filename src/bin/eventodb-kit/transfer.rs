//! `eventodb-kit export|import`: messages as NDJSON in EventoDB's export
//! format, between stores — e.g. from a device's embedded store to a real
//! EventoDB.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::path::PathBuf;

use clap::Args;
use eventodb_kit::store::ndjson;
use serde_json::json;

use crate::confirm::ConfirmArgs;
use crate::exit::{CliError, CliResult};
use crate::output::{plural, OutputArgs};
use crate::progress::Progress;
use crate::target::{Store, TargetArgs};

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The store to export from (--url), or the kit database whose
    /// embedded store is exported (--db).
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    out: OutputArgs,
    /// Only this category. Defaults to every message of the namespace.
    #[arg(long, value_name = "CATEGORY")]
    category: Option<String>,
    /// Write to this file (it must not exist yet). Defaults to stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The store to import into (--url), or the kit database whose
    /// embedded store receives the messages (--db).
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    out: OutputArgs,
    #[command(flatten)]
    confirm: ConfirmArgs,
    /// Read from this file. Defaults to stdin.
    #[arg(long, short = 'i', value_name = "FILE")]
    input: Option<PathBuf>,
    /// Delete every message of the destination namespace first (asks for
    /// confirmation; --yes when not on a terminal).
    #[arg(long)]
    force: bool,
    /// Create the embedded store file if it does not exist.
    #[arg(long)]
    create: bool,
}

/// Prints the summary: on stdout, unless the data went there.
fn summary(out: &OutputArgs, value: &serde_json::Value, data_on_stdout: bool, text: String) {
    if !data_on_stdout {
        out.emit(value, || outln!("{text}"));
    } else if out.json {
        eprintln!("{value}");
    } else {
        eprintln!("{text}");
    }
}

pub fn export(args: ExportArgs) -> CliResult {
    let store = args.target.open_store(false)?;
    store.check_reachable()?;
    let category = args.category.clone().unwrap_or_default();
    let mut writer: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(BufWriter::new(
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(|e| {
                    CliError::failure(format!("cannot create {}: {e}", path.display()))
                        .hint("choose a file that does not exist yet (export never overwrites)")
                })?,
        )),
        None => {
            if std::io::stdout().is_terminal() {
                eprintln!("export: writing NDJSON to the terminal; pass --output FILE or redirect to save it");
            }
            Box::new(BufWriter::new(std::io::stdout().lock()))
        }
    };
    let mut progress = Progress::new("export", None, "messages");
    let count = ndjson::export(store.as_dyn().as_ref(), &category, &mut writer, &mut |n| {
        progress.set(n, "")
    })?;
    writer.flush()?;
    drop(writer);
    progress.finish(count, "");
    let what = if category.is_empty() {
        format!("namespace {:?}", store.namespace())
    } else {
        format!("category {category:?} of namespace {:?}", store.namespace())
    };
    let to = args
        .output
        .as_ref()
        .map_or("stdout".to_string(), |p| p.display().to_string());
    let value = json!({
        "exported": count,
        "from": store.label(),
        "namespace": store.namespace(),
        "category": args.category,
        "output": to,
    });
    summary(
        &args.out,
        &value,
        args.output.is_none(),
        format!(
            "Exported {} of {what} from {} to {to}.",
            plural(count, "message", "messages"),
            store.label()
        ),
    );
    Ok(())
}

pub fn import(args: ImportArgs) -> CliResult {
    let store = args.target.open_store(args.create)?;
    store.check_reachable()?;
    let mut reader: Box<dyn BufRead> = match &args.input {
        Some(path) => Box::new(BufReader::new(File::open(path).map_err(|e| {
            CliError::new(
                crate::exit::NOT_FOUND,
                format!("cannot read {}: {e}", path.display()),
            )
            .hint("check the --input path")
        })?)),
        None => {
            if std::io::stdin().is_terminal() {
                eprintln!("import: reading NDJSON from the terminal (end with Ctrl-D); pass --input FILE to read a file");
            }
            Box::new(BufReader::new(std::io::stdin().lock()))
        }
    };
    if args.force {
        if !args.confirm.yes {
            eprintln!(
                "--force deletes every message of namespace {:?} in {} before importing.",
                store.namespace(),
                store.label()
            );
        }
        args.confirm.confirm("Delete them and import?")?;
    }
    let mut progress = Progress::new("import", None, "messages");
    let mut on_batch = |n| progress.set(n, "");
    let result = match &store {
        Store::Http(s) => s.import_ndjson(&mut reader, args.force, &mut on_batch),
        Store::Embedded(s, _) => s.import_ndjson(&mut reader, args.force, &mut on_batch),
    };
    let summary_value = result.map_err(|e| match e {
        eventodb_kit::Error::Store { ref code, .. } if code == "POSITION_EXISTS" => CliError::from(e).hint(
            "the destination already has messages at these positions or ids: import into an empty \
             namespace, or pass --force to replace its messages (batches before the failing one were imported)",
        ),
        eventodb_kit::Error::InvalidInput(_) => CliError::from(e).hint(
            "the input must be NDJSON in EventoDB's export format (as written by `eventodb-kit export`); \
             batches before the failing line were imported",
        ),
        other => other.into(),
    })?;
    progress.finish(summary_value.imported, "");
    let value = json!({
        "imported": summary_value.imported,
        "into": store.label(),
        "namespace": store.namespace(),
        "forced": args.force,
    });
    args.out.emit(&value, || {
        outln!(
            "Imported {} into namespace {:?} of {}.",
            plural(summary_value.imported, "message", "messages"),
            store.namespace(),
            store.label()
        )
    });
    Ok(())
}
