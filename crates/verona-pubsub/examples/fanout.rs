//! Times a publish to a node with 100,000 subscribers (not a test: no thresholds).
//!
//! `cargo run --release -p verona-pubsub --example fanout`

use std::time::Instant;

use jid::Jid;
use verona_pubsub::{
    AccessModel, ConfigField, CreateRequest, NoRoster, PublishRequest, Service, ServiceConfig,
    SystemEnvironment,
};

const SUBSCRIBERS: usize = 100_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = ServiceConfig::pubsub();
    config.limits.max_subscriptions_per_jid = 10;
    let mut service = Service::new(config, Box::new(SystemEnvironment::default()));
    let owner = Jid::new("owner@example.org/desk")?;
    let request = CreateRequest {
        node: Some("news".to_owned()),
        config: vec![ConfigField::AccessModel(AccessModel::Open)],
        ..CreateRequest::default()
    };
    let _ = service.create(&owner, request)?;

    let started = Instant::now();
    for i in 0..SUBSCRIBERS {
        let subscriber = Jid::new(&format!("user{i}@example.org"))?;
        let _ = service.subscribe(&NoRoster, &subscriber, "news", &subscriber, None)?;
    }
    println!("{SUBSCRIBERS} subscriptions: {:?}", started.elapsed());

    publish(
        &mut service,
        &owner,
        "first publish (builds the recipient list)",
    )?;
    publish(
        &mut service,
        &owner,
        "second publish (shares the recipient list)",
    )?;
    let late = Jid::new("late@example.org")?;
    let _ = service.subscribe(&NoRoster, &late, "news", &late, None)?;
    publish(
        &mut service,
        &owner,
        "publish after a new subscription (rebuilds)",
    )?;
    Ok(())
}

fn publish(
    service: &mut Service,
    owner: &Jid,
    label: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let outcome = service.publish(owner, "news", PublishRequest::payload(None, "<p/>"))?;
    let elapsed = started.elapsed();
    let recipients: usize = outcome.notifications().map(|n| n.recipients.len()).sum();
    println!("{label}: {elapsed:?} for {recipients} recipients");
    Ok(())
}
