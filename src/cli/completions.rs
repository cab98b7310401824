//! `tocsin completions SHELL` prints a completion script, and
//! `tocsin manpage [--dir DIR]` the roff man page; both are generated from
//! the clap definition, so they follow the commands and options as they
//! are. `packaging/gen-assets.sh` runs them for the Debian package.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory};
use clap_complete::Shell;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManpageArgs {
    /// Write `tocsin.1` and one page per command (`tocsin-run.1`, ...) into
    /// DIR instead of printing `tocsin.1` on stdout.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub fn completions(args: CompletionsArgs) -> ExitCode {
    let mut cmd = super::Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "tocsin", &mut buf);
    print(&buf)
}

pub fn manpage(args: ManpageArgs) -> ExitCode {
    match &args.dir {
        None => match render_manpage() {
            Ok(buf) => print(&buf),
            Err(e) => {
                eprintln!("error: cannot render the man page: {e}");
                ExitCode::FAILURE
            }
        },
        Some(dir) => match write_manpages(dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: cannot write man pages to {}: {e}", dir.display());
                ExitCode::FAILURE
            }
        },
    }
}

/// `tocsin.1`: name, synopsis, description, options, the commands, then
/// the sections clap knows nothing of (exit status, files, see also).
pub fn render_manpage() -> std::io::Result<Vec<u8>> {
    let man = clap_mangen::Man::new(super::Cli::command());
    let mut buf = Vec::new();
    man.render_title(&mut buf)?;
    man.render_name_section(&mut buf)?;
    man.render_synopsis_section(&mut buf)?;
    buf.extend_from_slice(DESCRIPTION.as_bytes());
    man.render_options_section(&mut buf)?;
    let mut commands = Vec::new();
    man.render_subcommands_section(&mut commands)?;
    // clap's `help` command has no page of its own: do not point to one.
    let commands = String::from_utf8_lossy(&commands).replace(HELP_ENTRY, "");
    buf.extend_from_slice(commands.as_bytes());
    buf.extend_from_slice(EXTRA_SECTIONS.as_bytes());
    man.render_version_section(&mut buf)?;
    Ok(buf)
}

/// `tocsin.1` (with the extra sections) and clap_mangen's page for each
/// command, `tocsin-run.1` and so on.
fn write_manpages(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(super::Cli::command(), dir)?;
    std::fs::write(dir.join("tocsin.1"), render_manpage()?)
}

const HELP_ENTRY: &str =
    ".TP\ntocsin\\-help(1)\nPrint this message or the help of the given subcommand(s)\n";

const DESCRIPTION: &str = r#".SH DESCRIPTION
\fBtocsin\fR takes JSON events over HTTP, TCP or tailed files, evaluates rules
(filters, thresholds over windows, absence, sequences) on event time with
per\-key state, and sends alerts to webhooks, email or files. Events are written
to a write\-ahead log before they are acknowledged and alerts go through a
durable outbox, so both survive a crash or a restart.
.PP
\fBtocsin check\fR validates rule files, \fBtocsin replay\fR evaluates them
offline over recorded events and \fBtocsin test\fR runs rule unit tests.
Each command has its own page, \fBtocsin\-COMMAND\fR(1), and its
\fB\-\-help\fR.
"#;

const EXTRA_SECTIONS: &str = r#".SH "EXIT STATUS"
.TP
\fBrun\fR
0 on a clean shutdown (SIGTERM, SIGINT), 1 on a fatal error at start.
.TP
\fBcheck\fR
0 when the rules are valid, 1 when they are not, 2 on a usage error.
.TP
\fBreplay\fR
0, or 1 when the rules or the input cannot be read.
.TP
\fBtest\fR
0 when every test passes, 1 when one fails, 2 on a malformed test file.
.SH ENVIRONMENT
.TP
\fBRUST_LOG\fR
Filters the logs on stderr (default \fIinfo\fR).
.SH FILES
.TP
\fI/etc/tocsin/tocsin.yaml\fR
The default configuration of \fBtocsin run\fR.
.TP
\fI/etc/tocsin/rules/\fR
Rule files (\fI*.rules\fR), reloaded when they change.
.TP
\fI/var/lib/tocsin/\fR
Write-ahead log, checkpoints and alert outbox.
.SH "SEE ALSO"
\fI/usr/share/doc/tocsin/\fR
"#;

fn print(buf: &[u8]) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(buf).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
