//! Every WGSL file in `src/shaders/` parses and validates with naga (no GPU needed).

use std::path::Path;

#[test]
fn every_shader_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/shaders");
    let mut checked = Vec::new();
    let mut failures = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("wgsl") {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let source = std::fs::read_to_string(&path).unwrap();
        match naga::front::wgsl::parse_str(&source) {
            Err(e) => failures.push(e.emit_to_string_with_path(&source, &name)),
            Ok(module) => {
                let mut validator = naga::valid::Validator::new(
                    naga::valid::ValidationFlags::all(),
                    naga::valid::Capabilities::default(),
                );
                if let Err(e) = validator.validate(&module) {
                    failures.push(format!("{name}: {}", e.emit_to_string(&source)));
                }
                assert!(
                    module
                        .entry_points
                        .iter()
                        .any(|ep| ep.stage == naga::ShaderStage::Compute),
                    "{name} has no compute entry point"
                );
            }
        }
        checked.push(name);
    }
    assert!(
        failures.is_empty(),
        "invalid shaders:\n{}",
        failures.join("\n")
    );
    for expected in ["score_logistic.wgsl", "score_mlp.wgsl", "score_trees.wgsl"] {
        assert!(
            checked.iter().any(|c| c == expected),
            "{expected} not found in {checked:?}"
        );
    }
    println!("validated {} shaders: {checked:?}", checked.len());
}
