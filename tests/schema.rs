//! Everything the engine outputs is valid per the real CRD schema of its kind (VM, VMI, VMI
//! replica set, VM pool: kube-apiserver would silently prune a misspelled field), and a second
//! pass changes nothing.
mod support;

use std::path::{Path, PathBuf};

use kubevirt_net_webhook::cmd::review::{self, Output, ReviewArgs};
use serde_json::Value;

fn shared(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(dir)
}

fn run(files: Vec<PathBuf>, nads: Option<PathBuf>, output: Output) -> (Vec<u8>, String) {
    let args = ReviewArgs {
        files,
        nads,
        vms: None,
        config: None,
        enforcement: None,
        output,
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    review::review(&args, &mut out, &mut err).expect("review runs");
    (out, String::from_utf8(err).unwrap())
}

fn check_dir(dir: &Path) -> usize {
    let mut checked = 0;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for file in files {
        let (out, err) = run(vec![file.clone()], None, Output::Yaml);
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), &out).unwrap();
        for doc in support::schema::yaml_documents(&String::from_utf8(out).unwrap()).unwrap() {
            if let Err(errors) = support::schema::validate_object(&doc) {
                panic!(
                    "{}: output fails the CRD schema: {errors:?}\n{err}",
                    file.display()
                );
            }
            checked += 1;
        }
        // Idempotent: reviewing the output again (with the original's NADs) patches nothing.
        let (patches, _) = run(
            vec![tmp.path().to_path_buf()],
            Some(file.clone()),
            Output::Patch,
        );
        for line in String::from_utf8(patches).unwrap().lines() {
            assert_eq!(line, "[]", "{}: second pass patched", file.display());
        }
    }
    checked
}

#[test]
fn kubevirt_examples_stay_valid() {
    // VMs, VMIs and a pool: every kind of SPEC §2.8 is among KubeVirt's examples.
    assert!(check_dir(&shared("kubevirt-examples")) >= 14);
}

#[test]
fn cases_stay_valid() {
    assert_eq!(check_dir(&shared("cases")), 6);
}

#[test]
fn the_validator_rejects_what_the_apiserver_would_prune() {
    let (out, _) = run(
        vec![shared("cases/seed-wukong-static-ip.yaml")],
        None,
        Output::Json,
    );
    let mut vm: Value = serde_json::from_slice(&out).unwrap();
    assert!(support::schema::validate_vm(&vm).is_ok());
    let iface = &mut vm["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"][1];
    let mac = iface["macAddress"].take();
    iface.as_object_mut().unwrap().remove("macAddress");
    iface["macaddress"] = mac;
    assert!(support::schema::validate_vm(&vm).is_err());
}
