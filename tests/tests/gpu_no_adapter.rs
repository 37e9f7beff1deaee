//! Without an adapter the GPU backend returns errors with a remedy, and `device = auto` falls
//! back to the CPU. The test re-runs itself with `WGPU_BACKEND=metal`, which hides every adapter
//! on Linux and Windows (Metal does not exist there, and wgpu is built without GL).

use ode_gpu::{GpuContext, GpuError};
use ode_train::Device;

const NAME: &str = "no_adapter_is_an_error_and_auto_falls_back_to_the_cpu";

#[test]
fn no_adapter_is_an_error_and_auto_falls_back_to_the_cpu() {
    if cfg!(target_os = "macos") {
        eprintln!("skipped on macOS: Metal is the adapter there, it cannot be hidden");
        return;
    }
    if std::env::var("WGPU_BACKEND").as_deref() != Ok("metal") {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", NAME, "--nocapture", "--test-threads", "1"])
            .env("WGPU_BACKEND", "metal")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("1 passed"),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let err = GpuContext::new().unwrap_err();
    assert!(matches!(err, GpuError::NoAdapter), "{err}");
    assert!(err.to_string().contains("mesa-vulkan-drivers"), "{err}");
    assert!(Device::Auto.open().unwrap().is_none(), "auto falls back to the CPU");
    let e = Device::Gpu.open().unwrap_err();
    assert!(e.to_string().contains("no GPU adapter"), "{e}");
    assert!(Device::Cpu.open().unwrap().is_none());
}
