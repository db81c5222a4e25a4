//! The files in `deploy/` hold settings `e2d run` accepts: every variable
//! of the systemd environment file and of the Kubernetes manifest is the
//! variable of an `e2d run` flag, and its value parses as that flag's; the
//! unit's ExecStart flags parse too.

use clap::{CommandFactory, Parser};
use e2d_shell::cli::{Cli, Command};

const UNIT: &str = include_str!("../../deploy/systemd/e2d.service");
const CONF: &str = include_str!("../../deploy/systemd/e2d.conf");
const MANIFEST: &str = include_str!("../../deploy/kubernetes/e2d.yaml");

/// Variables read by the AWS SDK rather than by a flag.
const SDK_VARIABLES: &[&str] = &["AWS_REGION"];

/// `e2d run` argv for `variables`: each turned into its flag.
fn run_argv(base: &[String], variables: &[(String, String)]) -> Vec<String> {
    let command = Cli::command();
    let run = command
        .find_subcommand("run")
        .expect("e2d has a run command");
    let mut argv = vec!["e2d".to_string(), "run".to_string()];
    argv.extend(base.iter().cloned());
    for (name, value) in variables {
        if SDK_VARIABLES.contains(&name.as_str()) {
            continue;
        }
        let arg = run
            .get_arguments()
            .find(|a| a.get_env().is_some_and(|env| env == name.as_str()))
            .unwrap_or_else(|| panic!("{name} is not the variable of any `e2d run` flag"));
        let flag = format!("--{}", arg.get_long().expect("a long flag"));
        if arg.get_action().takes_values() {
            argv.push(format!("{flag}={value}"));
        } else {
            assert!(
                ["true", "false"].contains(&value.as_str()),
                "{name}={value}: an on/off flag takes true or false"
            );
            if value == "true" {
                argv.push(flag);
            }
        }
    }
    argv
}

#[track_caller]
fn assert_parses(argv: &[String]) {
    match Cli::try_parse_from(argv) {
        Ok(Cli {
            command: Command::Run(_),
        }) => {}
        Ok(other) => panic!("{argv:?} parsed as {other:?}"),
        Err(e) => panic!("{argv:?} does not parse: {e}"),
    }
}

/// `KEY=VALUE` lines of an environment file.
fn environment_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (key, value) = l.split_once('=').expect("KEY=VALUE");
            (key.to_string(), value.to_string())
        })
        .collect()
}

/// The flags of the unit's ExecStart line (with its continuations).
fn exec_start_flags(unit: &str) -> Vec<String> {
    let start = unit.find("ExecStart=").expect("the unit has an ExecStart");
    let mut command = String::new();
    for line in unit[start + "ExecStart=".len()..].lines() {
        let line = line.trim();
        match line.strip_suffix('\\') {
            Some(part) => command.push_str(part),
            None => {
                command.push_str(line);
                break;
            }
        }
        command.push(' ');
    }
    let words: Vec<String> = command.split_whitespace().map(str::to_string).collect();
    assert_eq!(&words[..2], ["/usr/local/bin/e2d", "run"], "{command}");
    words[2..].to_vec()
}

/// `- name: X` followed by `value: Y` in the manifest's container env.
fn manifest_variables(manifest: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = manifest.lines().map(str::trim).collect();
    let mut variables = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = line.strip_prefix("- name: ") else {
            continue;
        };
        if !name.starts_with("E2D_") {
            continue;
        }
        match lines.get(i + 1).and_then(|l| l.strip_prefix("value: ")) {
            Some(value) => variables.push((name.to_string(), value.trim_matches('"').to_string())),
            // valueFrom (the pod's address): stands in for an address.
            None => variables.push((name.to_string(), "10.0.0.1".to_string())),
        }
    }
    variables
}

#[test]
fn the_systemd_unit_and_its_environment_file_parse() {
    let flags = exec_start_flags(UNIT);
    assert!(
        flags.iter().any(|f| f.starts_with("--data-dir=")),
        "{flags:?}"
    );
    let variables = environment_file(CONF);
    assert!(
        variables.iter().any(|(k, _)| k == "E2D_PEER_DISCOVERY"),
        "the example discovers its peers"
    );
    assert_parses(&run_argv(&flags, &variables));
    assert!(UNIT.contains("EnvironmentFile=/etc/e2d.conf"));
}

#[test]
fn the_kubernetes_manifest_parses_and_discovers_through_its_headless_service() {
    let variables = manifest_variables(MANIFEST);
    let discovery = variables
        .iter()
        .find(|(k, _)| k == "E2D_PEER_DISCOVERY")
        .map(|(_, v)| v.clone())
        .expect("the StatefulSet discovers its peers");
    assert!(
        discovery.starts_with("k8s-dns:e2d-peers."),
        "the method names the headless Service: {discovery}"
    );
    assert!(MANIFEST.contains("publishNotReadyAddresses: true"));
    assert!(MANIFEST.contains("clusterIP: None"));
    assert!(variables.len() >= 6, "{variables:?}");
    assert_parses(&run_argv(&[], &variables));
}

#[test]
fn a_variable_that_is_no_flag_is_caught() {
    let result = std::panic::catch_unwind(|| {
        run_argv(&[], &[("E2D_NO_SUCH_FLAG".to_string(), "1".to_string())])
    });
    assert!(result.is_err());
}
