//! The embedding example compiles and produces the signals its stream contains.

#[path = "../examples/embed.rs"]
mod embed_example;

#[test]
fn embed_example_emits_card_testing_and_velocity() -> anyhow::Result<()> {
    let lines = embed_example::run()?;
    let signals: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l))
        .collect::<Result<_, _>>()?;
    assert_eq!(signals.len(), 2, "{lines:?}");
    let testing = signals
        .iter()
        .find(|s| s["signal"] == "card_testing")
        .expect("card_testing signal");
    assert_eq!(testing["key"], "C1");
    assert_eq!(testing["seq"], serde_json::json!([0, 2, 3, 6]));
    assert_eq!(testing["fields"]["probes"], 3);
    assert_eq!(testing["fields"]["amount"], 950.0);
    let velocity = signals
        .iter()
        .find(|s| s["signal"] == "velocity")
        .expect("velocity signal");
    assert_eq!(velocity["key"], "C2");
    assert_eq!(velocity["seq"], serde_json::json!([1, 4, 5]));
    assert_eq!(velocity["fields"]["first_country"], "FR");
    assert_eq!(velocity["fields"]["last_country"], "IT");
    // Ids are stable: the same match always gets the same id.
    assert_eq!(embed_example::run()?, lines);
    Ok(())
}
