//! Command-line flags, raw: argv and `EARSHOT_*` variables into name → value, and `--help` text.
//!
//! Each subcommand declares its flags once in a table of [`Flag`]s; parsing, the environment
//! fallback and the help text all come from that table, so `--help`, the README and the real
//! flags cannot drift apart. Typed checks live with each subcommand's config.

use std::collections::HashMap;

use crate::error::{Error, Result};

/// One flag of a subcommand.
pub struct Flag {
    /// The long name without dashes: `chunk-ms` is `--chunk-ms` and `EARSHOT_CHUNK_MS`.
    pub name: &'static str,
    /// The value's placeholder in help (`MS`), or `None` for a switch.
    pub value: Option<&'static str>,
    /// The default, shown in help; `None` when there is none or it is computed.
    pub default: Option<&'static str>,
    pub help: &'static str,
}

/// Flags as given, before their values are checked.
#[derive(Debug, Default)]
pub struct RawArgs {
    /// Every value given for each flag, in order; most flags use only the last.
    values: HashMap<&'static str, Vec<String>>,
    pub positionals: Vec<String>,
    pub help: bool,
}

/// The environment variable that stands in for a flag.
pub fn env_name(flag: &str) -> String {
    format!("EARSHOT_{}", flag.to_ascii_uppercase().replace('-', "_"))
}

/// Parses `args` (without the program and subcommand names) against `flags`.
///
/// Accepts `--name value` and `--name=value`; a flag given twice keeps the last value (or all
/// of them, for the few flags read with [`RawArgs::list`]). A flag absent from `args` is taken
/// from its `EARSHOT_*` variable when that is set.
pub fn parse(flags: &[Flag], args: &[String]) -> Result<RawArgs> {
    parse_with_env(flags, args, |name| std::env::var(name).ok())
}

pub fn parse_with_env(
    flags: &[Flag],
    args: &[String],
    env: impl Fn(&str) -> Option<String>,
) -> Result<RawArgs> {
    let mut raw = RawArgs::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            raw.help = true;
            continue;
        }
        let Some(body) = arg.strip_prefix("--") else {
            if arg.starts_with('-') && arg.len() > 1 {
                return Err(Error::usage(format!("unknown option '{arg}' (see --help)")));
            }
            raw.positionals.push(arg.clone());
            continue;
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let flag = flags
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| Error::usage(format!("unknown option '--{name}' (see --help)")))?;
        let value = match (flag.value, inline) {
            (None, None) => "true".to_string(),
            (None, Some(v)) => v,
            (Some(_), Some(v)) => v,
            (Some(placeholder), None) => args
                .next()
                .cloned()
                .ok_or_else(|| Error::usage(format!("--{name} needs a value ({placeholder})")))?,
        };
        raw.values.entry(flag.name).or_default().push(value);
    }
    for flag in flags {
        if !raw.values.contains_key(flag.name) {
            if let Some(v) = env(&env_name(flag.name)).filter(|v| !v.is_empty()) {
                raw.values.insert(flag.name, vec![v]);
            }
        }
    }
    Ok(raw)
}

impl RawArgs {
    pub fn str(&self, name: &str) -> Option<&str> {
        self.values.get(name)?.last().map(String::as_str)
    }

    /// Every item of a repeatable, comma-separated flag: `--x a,b --x c` is `[a, b, c]`.
    pub fn list(&self, name: &str) -> Vec<&str> {
        self.values
            .get(name)
            .into_iter()
            .flatten()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect()
    }

    pub fn string_or(&self, name: &str, default: &str) -> String {
        self.str(name).unwrap_or(default).to_string()
    }

    /// A switch: set by `--name`, or by its variable being `1`, `true` or `yes`.
    pub fn switch(&self, name: &str) -> Result<bool> {
        match self.str(name) {
            None => Ok(false),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(Error::usage(format!(
                    "--{name}: expected true or false, got '{v}'"
                ))),
            },
        }
    }

    /// A whole number within `range`, or `default` when the flag is absent.
    pub fn number<T>(&self, name: &str, default: T, range: std::ops::RangeInclusive<T>) -> Result<T>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        let Some(v) = self.str(name) else {
            return Ok(default);
        };
        let n: T = v
            .trim()
            .parse()
            .map_err(|_| Error::usage(format!("--{name}: expected a whole number, got '{v}'")))?;
        if !range.contains(&n) {
            return Err(Error::usage(format!(
                "--{name}: {n} is out of range ({} to {})",
                range.start(),
                range.end()
            )));
        }
        Ok(n)
    }
}

/// Renders a subcommand's help: usage line, summary, then one entry per flag.
pub fn help(usage: &str, summary: &str, flags: &[Flag]) -> String {
    let mut out = format!("Usage: {usage}\n\n{summary}\n\nOptions:\n");
    for flag in flags {
        let head = match flag.value {
            Some(v) => format!("--{} {v}", flag.name),
            None => format!("--{}", flag.name),
        };
        out.push_str(&format!("  {head}\n"));
        for line in flag.help.lines() {
            out.push_str(&format!("        {line}\n"));
        }
        let mut tail = format!("[env: {}", env_name(flag.name));
        if let Some(d) = flag.default {
            tail.push_str(&format!(", default: {d}"));
        }
        out.push_str(&format!("        {tail}]\n"));
    }
    out.push_str("  -h, --help\n        Print this help\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAGS: &[Flag] = &[
        Flag {
            name: "chunk-ms",
            value: Some("MS"),
            default: Some("20"),
            help: "chunk",
        },
        Flag {
            name: "verbose",
            value: None,
            default: None,
            help: "more",
        },
    ];

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_accept_both_spellings_and_env_fills_the_rest() {
        let env = |n: &str| (n == "EARSHOT_CHUNK_MS").then(|| "30".to_string());
        let raw = parse_with_env(FLAGS, &args(&["--verbose"]), env).unwrap();
        assert_eq!(raw.number("chunk-ms", 20u32, 5..=100).unwrap(), 30);
        assert!(raw.switch("verbose").unwrap());
        let raw = parse_with_env(FLAGS, &args(&["--chunk-ms=10"]), env).unwrap();
        assert_eq!(raw.number("chunk-ms", 20u32, 5..=100).unwrap(), 10);
    }

    #[test]
    fn list_flags_collect_every_value_and_comma_item() {
        let flags = &[Flag {
            name: "origin",
            value: Some("O"),
            default: None,
            help: "o",
        }];
        let none = |_: &str| None;
        let raw = parse_with_env(flags, &args(&["--origin", "a, b", "--origin=c"]), none).unwrap();
        assert_eq!(raw.list("origin"), ["a", "b", "c"]);
        assert_eq!(raw.str("origin"), Some("c"));
        let env = |_: &str| Some("x,y".to_string());
        assert_eq!(
            parse_with_env(flags, &[], env).unwrap().list("origin"),
            ["x", "y"]
        );
    }

    #[test]
    fn bad_flags_say_what_is_wrong() {
        let none = |_: &str| None;
        let e = parse_with_env(FLAGS, &args(&["--nope"]), none).unwrap_err();
        assert_eq!(e.to_string(), "unknown option '--nope' (see --help)");
        let e = parse_with_env(FLAGS, &args(&["--chunk-ms"]), none).unwrap_err();
        assert_eq!(e.to_string(), "--chunk-ms needs a value (MS)");
        let raw = parse_with_env(FLAGS, &args(&["--chunk-ms", "500"]), none).unwrap();
        let e = raw.number("chunk-ms", 20u32, 5..=100).unwrap_err();
        assert_eq!(e.to_string(), "--chunk-ms: 500 is out of range (5 to 100)");
    }

    #[test]
    fn help_lists_every_flag_with_its_variable() {
        let text = help("earshot x", "Does x.", FLAGS);
        assert!(text.contains("--chunk-ms MS"));
        assert!(text.contains("[env: EARSHOT_CHUNK_MS, default: 20]"));
        assert!(text.contains("[env: EARSHOT_VERBOSE]"));
    }
}
