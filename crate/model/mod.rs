//! The model as data: the graph IR ([`graph`]), the `.etm` file format ([`etm`]), input
//! preprocessing ([`preprocess`]) and label lists ([`labels`]). Nothing here executes a
//! network: that is [`crate::exec`].

pub mod etm;
pub mod graph;
pub mod labels;
pub mod preprocess;
