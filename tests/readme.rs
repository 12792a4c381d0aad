//! The README's usage blocks are exactly what `--help` prints (regenerate them with
//! `scripts/update-readme-usage.sh`).

mod support;

#[test]
fn readme_usage_blocks_match_the_help_text() {
    let readme = std::fs::read_to_string(support::repo_root().join("README.md")).unwrap();
    let mut checked = 0;
    for (start, _) in readme.match_indices("<!-- usage:") {
        let rest = &readme[start + "<!-- usage:".len()..];
        let cmd = &rest[..rest.find(" -->").unwrap()];
        let end = rest
            .find(&format!("<!-- /usage:{cmd} -->"))
            .expect("closing marker");
        let block = &rest[rest.find("```text\n").unwrap() + 8..end];
        let block = block.trim_end().strip_suffix("```").unwrap().trim_end();
        let args: Vec<&str> = if cmd == "main" {
            vec!["--help"]
        } else {
            vec![cmd, "--help"]
        };
        let (code, help, _) = support::run_earshot(&args);
        assert_eq!(code, 0);
        assert_eq!(
            block,
            help.trim_end(),
            "README usage for '{cmd}' is stale: run scripts/update-readme-usage.sh"
        );
        checked += 1;
    }
    assert!(checked >= 2, "README has usage blocks");
}
