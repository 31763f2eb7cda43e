//! The MQTT front end: an embedded `rumqttd` broker bridged into the engine.
//!
//! Devices publish to `sensors/<device>/<metric>` on the broker; the bridge
//! reads every message through an in-process link, validates it
//! ([`validate`]), publishes accepted readings into the engine topics
//! `temperature` and `humidity` (keyed by device, so each device stays in
//! order) and sends refused messages to the `dead_letter` topic with their raw
//! payload and a [`validate::Reason`].

pub mod sim;
pub mod validate;
