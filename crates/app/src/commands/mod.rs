//! One function per command.

pub mod cluster;
pub mod compare;
pub mod dense;
pub mod headstats;
pub mod inspect;
pub mod melt;
pub mod plot;
pub mod received;
pub mod rollout;
pub mod similarity;
pub mod topk;
pub mod view;
