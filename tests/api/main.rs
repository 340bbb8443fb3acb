//! API tests against the real application and a real store. One binary (faster to link); each
//! module covers one capability. Behaviour tests run on both backends via `contract!`.

mod billing;
mod campaigns;
mod caps;
mod chat;
mod cluster;
mod console;
mod creatives;
mod durability;
mod events;
mod golden;
mod hardening;
mod insight;
mod isolation;
mod messaging;
mod observability;
mod openapi;
mod operations;
mod placement;
mod privacy;
mod record;
mod reporting;
mod support;
