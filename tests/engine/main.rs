//! The engine against every rule of SPEC §2, one module per rule (named as the engine's).
//! Each test is one behaviour; scenarios are built with the shared fixtures.
#[path = "../support/mod.rs"]
mod support;

mod addresses;
mod binding;
mod cloudinit;
mod day_two;
mod kinds;
mod limits;
mod macs;
mod names;
mod opt_out;
mod pools;
mod ratchet;
mod tenancy;

#[allow(unused_imports)]
use kubevirt_net_webhook::{
    engine::Verdict,
    inventory::Inventory,
    model::{
        config::{Config, MissingNad},
        mac::{self, Mac},
        nad::Nad,
    },
};
#[allow(unused_imports)]
use serde_json::{Value, json};
#[allow(unused_imports)]
use support::fixtures::*;
