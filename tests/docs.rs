//! The README says what the code does: its table of rule ids (SPEC §2.11) lists exactly the
//! rules of `engine::Rule::ALL`, in that order, with the same SPEC sections and meanings.
use kubevirt_net_webhook::engine::Rule;

/// The rows of the README's rule-id table: (id, SPEC, what it means), backticks removed.
fn readme_rules() -> Vec<(String, String, String)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let header = "| id | SPEC | what it means |";
    let start = readme
        .find(header)
        .expect("the README has the rule-id table");
    readme[start..]
        .lines()
        .skip(2) // header and separator
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<String> = l.split('|').map(|c| c.trim().replace('`', "")).collect();
            (cells[1].clone(), cells[2].clone(), cells[3].clone())
        })
        .collect()
}

#[test]
fn the_readme_rule_table_matches_the_code() {
    let code: Vec<(String, String, String)> = Rule::ALL
        .iter()
        .map(|r| (r.id().into(), r.section().into(), r.summary().into()))
        .collect();
    assert_eq!(readme_rules(), code);
}
