//! Hostile components that Rust cannot produce, assembled here from WebAssembly text: one whose
//! condition grows its function table without end, and one that creates forty core instances to
//! exhaust the instance limit. Each fails alone, with a reason that names the
//! limit; the runtime goes on serving other plugins.

use std::path::Path;

use plugin_runtime::{
    EvaluationContext, PluginError, PluginKind, PluginRuntime, QueryResult, RuntimeConfig,
};
use wasm_encoder::{Component, ComponentSectionId, InstanceSection, ModuleArg, RawSection};

/// A core module implementing `alert-condition` by hand: a bump allocator, constant metadata,
/// no config errors, and an `evaluate` that grows its table until the host says no, then traps.
const TABLE_GROWER: &str = r#"
(module
  (memory (export "memory") 1)
  (table $t 1 funcref)
  (global $heap (mut i32) (i32.const 4096))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    (local.set $p
      (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
        (i32.xor (i32.sub (local.get 2) (i32.const 1)) (i32.const -1))))
    (global.set $heap (i32.add (local.get $p) (local.get 3)))
    (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
      (then (drop (memory.grow (i32.add
        (i32.div_u (i32.sub (global.get $heap) (i32.mul (memory.size) (i32.const 65536))) (i32.const 65536))
        (i32.const 1))))))
    (local.get $p))
  (data (i32.const 100) "table-grower")
  (data (i32.const 120) "1.0.0")
  (data (i32.const 130) "grows its table")
  (data (i32.const 150) "{}")
  (data (i32.const 200) "\64\00\00\00\0c\00\00\00\78\00\00\00\05\00\00\00\82\00\00\00\0f\00\00\00\96\00\00\00\02\00\00\00")
  (data (i32.const 240) "\00\00\00\00\00\00\00\00")
  (func (export "telemetryflow:plugin/metadata@0.1.0#metadata") (result i32)
    (i32.const 200))
  (func (export "telemetryflow:plugin/metadata@0.1.0#validate-config") (param i32 i32) (result i32)
    (i32.const 240))
  (func (export "telemetryflow:plugin/condition@0.1.0#evaluate")
    (param i32 i32 i64 i64 i64 i64 i32 i32 i32 i32 i32 i32 i32) (result i32)
    (loop $again
      (br_if $again
        (i32.ne (table.grow $t (ref.null func) (i32.const 1000000)) (i32.const -1))))
    unreachable)
)
"#;

fn table_grower() -> Vec<u8> {
    let mut module = wat::parse_str(TABLE_GROWER).expect("wat");
    let mut resolve = wit_parser::Resolve::default();
    let (pkg, _) = resolve
        .push_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wit"))
        .expect("wit");
    let world = resolve
        .select_world(&[pkg], Some("alert-condition"))
        .expect("world");
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
        false,
    )
    .expect("embed");
    wit_component::ComponentEncoder::default()
        .module(&module)
        .expect("module")
        .validate(true)
        .encode()
        .expect("encode")
}

/// `component` with `copies` more core instances (of an empty module) appended: created when
/// the component is instantiated, before any export is called.
fn many_instances(component: &[u8], copies: u32) -> Vec<u8> {
    // Count the top-level core modules (section id 1) so the new one's index is known.
    let mut modules = 0u32;
    let mut at = 8;
    while at < component.len() {
        let id = component[at];
        at += 1;
        let (mut size, mut shift) = (0usize, 0);
        loop {
            let byte = component[at];
            at += 1;
            size |= usize::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                break;
            }
        }
        if id == ComponentSectionId::CoreModule as u8 {
            modules += 1;
        }
        at += size;
    }
    let empty = wat::parse_str("(module)").expect("wat");
    let mut out = component.to_vec();
    let mut extra = Component::new();
    extra.section(&RawSection {
        id: ComponentSectionId::CoreModule as u8,
        data: &empty,
    });
    let mut instances = InstanceSection::new();
    for _ in 0..copies {
        instances.instantiate(modules, Vec::<(&str, ModuleArg)>::new());
    }
    extra.section(&instances);
    // A component's sections may come in any order: append the new ones (without the header).
    out.extend_from_slice(&extra.finish()[8..]);
    out
}

fn evaluate(
    rt: &PluginRuntime,
    plugin: &plugin_runtime::CompiledPlugin,
) -> Result<(), PluginError> {
    let ctx = EvaluationContext {
        rule_id: "r".into(),
        evaluation_time_ms: 0,
        interval_ms: 60_000,
        range_start_ms: 0,
        range_end_ms: 0,
        config: "{}".into(),
        state: None,
    };
    let inputs = [QueryResult {
        name: "A".into(),
        data: Vec::new(),
    }];
    rt.evaluate(plugin, &ctx, &inputs).map(|_| ())
}

#[test]
fn table_growth_stops_at_the_limit_and_fails_only_its_call() {
    let rt = PluginRuntime::new(RuntimeConfig::default()).expect("runtime");
    let bytes = table_grower();
    let plugin = rt
        .compile(&bytes, Some(PluginKind::AlertCondition))
        .expect("a well-formed condition");
    assert_eq!(plugin.metadata.name, "table-grower");
    for _ in 0..3 {
        let err = evaluate(&rt, &plugin).expect_err("the table cannot grow forever");
        assert!(
            matches!(&err, PluginError::Limit { plugin, message }
                if plugin == "table-grower@1.0.0" && message.contains("table")),
            "{err}"
        );
    }
    // The same runtime goes on: metadata calls of the same plugin still work.
    assert!(
        rt.validate_config(&plugin, "{}")
            .expect("validate")
            .is_empty()
    );
}

#[test]
fn too_many_instances_are_refused_with_the_reason() {
    let rt = PluginRuntime::new(RuntimeConfig::default()).expect("runtime");
    let inner = table_grower();
    let two = many_instances(&inner, 2);
    let ok = rt
        .compile(&two, None)
        .expect("two copies are within the limits");
    assert_eq!(ok.metadata.name, "table-grower");
    let err = rt
        .compile(&many_instances(&inner, 40), None)
        .expect_err("forty copies exceed the instance limit");
    assert!(
        matches!(&err, PluginError::Limit { message, .. } if message.contains("instance")),
        "{err}"
    );
}
