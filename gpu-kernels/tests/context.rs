//! The context helpers: pipeline, buffers, dispatch, read-back and errors as values.

use gpu_kernels::context::{GpuError, Readback};
use gpu_kernels::test_support::context_or_skip;

const DOUBLE: &str = r#"
@group(0) @binding(0) var<storage, read> input: array<u32>;
@group(0) @binding(1) var<storage, read_write> output: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    if id.x < arrayLength(&input) {
        output[id.x] = input[id.x] * 2u + 1u;
    }
}
"#;

#[test]
fn dispatch_and_read_back() {
    let Some(ctx) = context_or_skip("dispatch_and_read_back") else {
        return;
    };
    println!("adapter: {}", ctx.adapter());
    let kernel = ctx.pipeline("double", DOUBLE, "main").unwrap();
    let input: Vec<u32> = (0..1000).collect();
    let a = ctx.storage_buffer("input", &input).unwrap();
    let b = ctx.storage_buffer_zeroed("output", 4000).unwrap();
    ctx.dispatch(&kernel, &[&a, &b], [1000u32.div_ceil(64), 1, 1])
        .unwrap();
    let mut staging = Readback::new();
    let out: Vec<u32> = ctx.read_back(&b, 1000, &mut staging).unwrap();
    assert_eq!(out, input.iter().map(|x| x * 2 + 1).collect::<Vec<_>>());
    // The staging buffer is reused (and grown) across reads.
    let first: Vec<u32> = ctx.read_back(&b, 10, &mut staging).unwrap();
    assert_eq!(first, out[..10]);
}

#[test]
fn bad_shader_is_a_validation_error() {
    let Some(ctx) = context_or_skip("bad_shader_is_a_validation_error") else {
        return;
    };
    let err = ctx.pipeline("broken", "fn main( {", "main").unwrap_err();
    assert!(matches!(err, GpuError::Validation(_)), "{err:?}");
    let err = ctx.pipeline("no entry", DOUBLE, "nope").unwrap_err();
    assert!(matches!(err, GpuError::Validation(_)), "{err:?}");
    // The context still works afterwards.
    assert!(ctx.pipeline("double", DOUBLE, "main").is_ok());
}

#[test]
fn limits_are_checked() {
    let Some(ctx) = context_or_skip("limits_are_checked") else {
        return;
    };
    assert!(
        ctx.max_binding_bytes() >= 128 << 20,
        "{}",
        ctx.max_binding_bytes()
    );
    assert!(ctx.max_workgroups_per_dimension() >= 65535);
    let too_big = ctx.max_binding_bytes() + 4;
    let err = ctx.storage_buffer_zeroed("huge", too_big).unwrap_err();
    assert!(matches!(err, GpuError::TooLarge { .. }), "{err:?}");
    let kernel = ctx.pipeline("double", DOUBLE, "main").unwrap();
    let a = ctx.storage_buffer("input", &[1u32]).unwrap();
    let b = ctx.storage_buffer_zeroed("output", 4).unwrap();
    let err = ctx
        .dispatch(
            &kernel,
            &[&a, &b],
            [ctx.max_workgroups_per_dimension() + 1, 1, 1],
        )
        .unwrap_err();
    assert!(matches!(err, GpuError::TooLarge { .. }), "{err:?}");
    // A binding of the wrong kind is a validation error, not a panic.
    let u = ctx.uniform_buffer("uniform", &[0u32; 4]).unwrap();
    let err = ctx.dispatch(&kernel, &[&u, &b], [1, 1, 1]).unwrap_err();
    assert!(matches!(err, GpuError::Validation(_)), "{err:?}");
}

#[test]
fn shared_is_built_once() {
    let a = gpu_kernels::context::GpuContext::shared();
    let b = gpu_kernels::context::GpuContext::shared();
    match (a, b) {
        (Ok(a), Ok(b)) => assert!(std::ptr::eq(a, b)),
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("the shared context changed between calls"),
    }
}
