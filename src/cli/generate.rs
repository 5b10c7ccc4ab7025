//! `msglog completions SHELL` and `msglog man`: shell completion scripts and
//! the man page, generated from the clap definitions, so they always list
//! exactly the subcommands and options the binary has.

use std::io::{self, Write};

use clap::Command;

/// A shell to complete for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

impl From<CompletionShell> for clap_complete::Shell {
    fn from(shell: CompletionShell) -> Self {
        match shell {
            CompletionShell::Bash => clap_complete::Shell::Bash,
            CompletionShell::Zsh => clap_complete::Shell::Zsh,
            CompletionShell::Fish => clap_complete::Shell::Fish,
        }
    }
}

#[derive(clap::Args)]
pub struct CompletionsArgs {
    /// The shell to print a completion script for.
    #[arg(value_enum)]
    pub shell: CompletionShell,
}

/// Writes the completion script of `command` (the whole `msglog`) for `shell`.
pub fn completions(shell: CompletionShell, mut command: Command, out: &mut dyn Write) {
    let name = command.get_name().to_owned();
    clap_complete::generate(clap_complete::Shell::from(shell), &mut command, name, out);
}

/// Writes one man page (roff) for `command`: its name, synopsis and
/// description, the list of commands, then a section per command with its
/// description, synopsis and every option.
pub fn man(mut command: Command, out: &mut dyn Write) -> io::Result<()> {
    // Built once, so that each subcommand's synopsis reads `msglog serve`.
    command.build();
    let subcommands: Vec<&Command> = command
        .get_subcommands()
        .filter(|s| s.get_name() != "help")
        .collect();
    let page = clap_mangen::Man::new(command.clone());
    let mut roff = Vec::new();
    page.render_title(&mut roff)?;
    page.render_name_section(&mut roff)?;
    page.render_synopsis_section(&mut roff)?;
    page.render_description_section(&mut roff)?;
    let mut list = roff::Roff::new();
    list.control("SH", ["COMMANDS"]);
    for sub in &subcommands {
        let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
        list.control("TP", [])
            .text([roff::bold(format!(
                "{} {}",
                command.get_name(),
                sub.get_name()
            ))])
            .text([roff::roman(about)]);
    }
    list.to_writer(&mut roff)?;
    for sub in subcommands {
        let heading = format!("{} {}", command.get_name(), sub.get_name()).to_uppercase();
        roff::Roff::new()
            .control("SH", [heading.as_str()])
            .to_writer(&mut roff)?;
        let sub_page = clap_mangen::Man::new(sub.clone());
        // The command's own sections, as subsections of its section.
        let mut sections = Vec::new();
        sub_page.render_description_section(&mut sections)?;
        sub_page.render_synopsis_section(&mut sections)?;
        sub_page.render_options_section(&mut sections)?;
        roff.extend(as_subsections(&sections));
    }
    page.render_version_section(&mut roff)?;
    out.write_all(&once_preamble(&roff))
}

/// The line pair every rendering starts with, which defines the string
/// `Aq`; once at the top of the page is enough.
const PREAMBLE: [&str; 2] = [".ie \\n(.g .ds Aq \\(aq", ".el .ds Aq '"];

/// Drops every copy of the preamble but the first.
fn once_preamble(roff: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(roff);
    let mut seen = [false; PREAMBLE.len()];
    let mut out = String::new();
    for line in text.lines() {
        if let Some(i) = PREAMBLE.iter().position(|p| *p == line) {
            if seen[i] {
                continue;
            }
            seen[i] = true;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.into_bytes()
}

/// Turns each `.SH TITLE` heading into `.SS Title`.
fn as_subsections(sections: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(sections);
    let mut out = String::new();
    for line in text.lines() {
        match line.strip_prefix(".SH ") {
            Some(title) => {
                let title = title.trim_matches('"').to_lowercase();
                let mut chars = title.chars();
                let title: String = chars
                    .next()
                    .map(|c| c.to_uppercase().chain(chars).collect())
                    .unwrap_or_default();
                out.push_str(&format!(".SS {title}\n"));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn command() -> Command {
        crate::Cli::command()
    }

    fn subcommands() -> Vec<String> {
        command()
            .get_subcommands()
            .map(|s| s.get_name().to_owned())
            .collect()
    }

    /// Every long option of `serve`, from its clap definition.
    fn serve_options() -> Vec<String> {
        let command = command();
        let serve = command.find_subcommand("serve").unwrap();
        let longs: Vec<String> = serve
            .get_arguments()
            .filter_map(|a| a.get_long())
            .map(str::to_owned)
            .collect();
        assert!(longs.len() > 10, "serve has more options than {longs:?}");
        longs
    }

    #[test]
    fn completions_name_every_subcommand_and_every_serve_option() {
        for shell in [
            CompletionShell::Bash,
            CompletionShell::Zsh,
            CompletionShell::Fish,
        ] {
            let mut out = Vec::new();
            completions(shell, command(), &mut out);
            let script = String::from_utf8(out).unwrap();
            assert!(!script.is_empty());
            for sub in subcommands() {
                assert!(script.contains(&sub), "{shell:?}: no subcommand {sub}");
            }
            for long in serve_options() {
                let spelled = match shell {
                    CompletionShell::Fish => format!("-l {long}"),
                    CompletionShell::Bash | CompletionShell::Zsh => format!("--{long}"),
                };
                assert!(script.contains(&spelled), "{shell:?}: no {spelled}");
            }
        }
    }

    #[test]
    fn the_man_page_names_every_subcommand_and_every_serve_option() {
        let mut out = Vec::new();
        man(command(), &mut out).unwrap();
        let page = String::from_utf8(out).unwrap();
        assert!(
            page.starts_with(".ie") || page.starts_with(".TH"),
            "{}",
            &page[..80]
        );
        for sub in subcommands().iter().filter(|s| *s != "help") {
            let heading = format!(".SH \"MSGLOG {}\"", sub.to_uppercase());
            assert!(page.contains(&heading), "no section {heading}");
        }
        let serve = page
            .split(".SH \"MSGLOG SERVE\"")
            .nth(1)
            .unwrap()
            .split(".SH ")
            .next()
            .unwrap();
        for long in serve_options() {
            // roff writes a hyphen as \-.
            let spelled = format!("\\-\\-{}", long.replace('-', "\\-"));
            assert!(serve.contains(&spelled), "serve section lacks {spelled}");
        }
        assert!(serve.contains(".SS Options"), "{serve}");
    }

    #[test]
    fn section_headings_become_subsections_and_the_preamble_stays_once() {
        assert_eq!(
            as_subsections(b".SH OPTIONS\n.TP\nx\n.SH \"SYNOPSIS\"\n"),
            b".SS Options\n.TP\nx\n.SS Synopsis\n"
        );
        let twice = format!(
            "{0}\n{1}\n.TH x\n{0}\n{1}\n.SH A\n",
            PREAMBLE[0], PREAMBLE[1]
        );
        assert_eq!(
            String::from_utf8(once_preamble(twice.as_bytes())).unwrap(),
            format!("{}\n{}\n.TH x\n.SH A\n", PREAMBLE[0], PREAMBLE[1])
        );
    }
}
