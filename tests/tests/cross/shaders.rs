//! Every WGSL file in `shaders/` parses and validates with naga, without a GPU, and the crate's
//! embedded copies are those files.

use std::path::Path;

#[test]
fn every_wgsl_file_parses_and_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shaders");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("shaders/ folder") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_none_or(|e| e != "wgsl") {
            continue;
        }
        let src = std::fs::read_to_string(&path).expect("read shader");
        let module = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{}: {}", path.display(), e.emit_to_string(&src)));
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::empty())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}: {}", path.display(), e.emit_to_string(&src)));
        // The crate embeds exactly this file.
        let name = path.file_name().unwrap().to_str().unwrap();
        let embedded = ode_gpu::testing::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("{name} is not embedded by ode-gpu"));
        assert_eq!(embedded.1, src, "{name}: embedded copy differs");
        seen += 1;
    }
    assert_eq!(seen, ode_gpu::testing::ALL.len(), "every embedded shader has a file");
}

#[test]
fn a_broken_shader_is_rejected() {
    // The check above can fail: a type error in a copy of a real kernel is caught.
    let src = ode_gpu::testing::MLP_WGSL.replace("var v = g.alpha * acc;", "var v = g.alpha * acc + 1u;");
    assert_ne!(src, ode_gpu::testing::MLP_WGSL, "the mutation applies");
    let module = naga::front::wgsl::parse_str(&src);
    let rejected = match module {
        Err(_) => true,
        Ok(m) => naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::empty())
            .validate(&m)
            .is_err(),
    };
    assert!(rejected);
}

/// The value of `const NAME: TYPE = VALUE;` in a shader's source, as text without a `u` suffix.
fn wgsl_const<'a>(src: &'a str, name: &str) -> &'a str {
    let line = src
        .lines()
        .find(|l| l.starts_with(&format!("const {name}:")))
        .unwrap_or_else(|| panic!("rk.wgsl declares no const {name}"));
    let value = line.split('=').nth(1).expect("const has a value");
    value.split(';').next().unwrap().trim().trim_end_matches('u')
}

#[test]
fn rk_constants_agree_with_the_host() {
    let src = ode_gpu::testing::RK_WGSL;
    let snap: f64 = wgsl_const(src, "SNAP_ULPS").parse().unwrap();
    assert_eq!(snap, ode_core::SNAP_ULPS, "the kernels snap to targets like ode-core");
    use ode_gpu::testing::field;
    for (name, host) in [
        ("T", field::T),
        ("HS", field::HS),
        ("ST", field::ST),
        ("ACC", field::ACC),
        ("REJ", field::REJ),
        ("NFE", field::NFE),
        ("FIELDS", field::FIELDS),
    ] {
        let shader: usize = wgsl_const(src, name).parse().unwrap();
        assert_eq!(shader, host, "control field {name}");
    }
}

#[test]
fn status_codes_agree_with_the_host() {
    use ode_gpu::testing::status;
    let src = ode_gpu::testing::RK_WGSL;
    for (name, host) in [
        ("RUNNING", status::RUNNING),
        ("DONE", status::DONE),
        ("UNDERFLOW", status::UNDERFLOW),
        ("MAX_STEPS", status::MAX_STEPS),
        ("NON_FINITE", status::NON_FINITE),
    ] {
        let shader: f32 = wgsl_const(src, name).parse().unwrap();
        assert_eq!(shader, host, "status code {name}");
    }
}

#[test]
fn workgroup_sizes_are_those_the_host_dispatches_with() {
    // naga's own reading of every `@workgroup_size`, against the size the host sizes that entry
    // point's grid by (`Entry::workgroup_size`, from the role constants of `ode_gpu::testing`).
    use ode_gpu::testing::{COUNT_WG, Entry, GEMM_WG, MLP_WGSL, RK_WGSL, WG};
    let mlp = naga::front::wgsl::parse_str(MLP_WGSL).expect("mlp.wgsl parses");
    let rk = naga::front::wgsl::parse_str(RK_WGSL).expect("rk.wgsl parses");
    for e in Entry::ALL {
        let (name, in_mlp) = e.name();
        let module = if in_mlp { &mlp } else { &rk };
        let ep = module
            .entry_points
            .iter()
            .find(|ep| ep.name == name)
            .unwrap_or_else(|| panic!("no entry point {name}"));
        assert_eq!(ep.workgroup_size, e.workgroup_size(), "{name}: @workgroup_size");
    }
    assert_eq!(
        mlp.entry_points.len() + rk.entry_points.len(),
        Entry::ALL.len(),
        "the host dispatches every entry point"
    );
    assert_eq!(Entry::GemmRows.workgroup_size(), [WG, 1, 1]);
    assert_eq!(Entry::Gemm.workgroup_size(), [GEMM_WG, GEMM_WG, 1]);
    assert_eq!(Entry::CountActive.workgroup_size(), [COUNT_WG, 1, 1]);
}
