//! OP Stack: output roots and sequencer gossip (being written).
