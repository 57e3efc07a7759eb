// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title AdapterRegistry
/// @notice Adapter id → what the adapter is (the content hash lorad's store computes over the
///         adapter's files, and the base model it applies to), who owns it, which Datanet it
///         was trained on, and its prices in OPEN base units per 1,000 input and output tokens.
///         Only an adapter's owner changes it; every change is an event.
/// @dev Storage layout is part of the interface: lorad's light client proves
///      `adapters[id].contentHash` (slot keccak256(id . 0) + 1) before it signs a receipt.
///      The Rust tests pin this layout.
contract AdapterRegistry {
    struct Adapter {
        address owner;
        bytes32 contentHash;
        bytes32 baseModelHash;
        bytes32 datanetId;
        uint128 priceInPer1k;
        uint128 priceOutPer1k;
    }

    /// slot 0
    mapping(bytes32 => Adapter) private adapters;

    event AdapterRegistered(
        bytes32 indexed adapterId,
        address indexed owner,
        bytes32 contentHash,
        bytes32 baseModelHash,
        bytes32 indexed datanetId,
        uint128 priceInPer1k,
        uint128 priceOutPer1k
    );
    event AdapterUpdated(
        bytes32 indexed adapterId,
        bytes32 contentHash,
        bytes32 baseModelHash,
        bytes32 indexed datanetId,
        uint128 priceInPer1k,
        uint128 priceOutPer1k
    );
    event AdapterOwnerChanged(bytes32 indexed adapterId, address indexed from, address indexed to);

    error AdapterExists(bytes32 adapterId);
    error UnknownAdapter(bytes32 adapterId);
    error NotAdapterOwner(bytes32 adapterId, address caller);
    /// A zero content hash would make an unregistered adapter look registered.
    error ZeroContentHash();
    error ZeroOwner();

    /// @notice Registers `adapterId` with the caller as its owner.
    function register(
        bytes32 adapterId,
        bytes32 contentHash,
        bytes32 baseModelHash,
        bytes32 datanetId,
        uint128 priceInPer1k,
        uint128 priceOutPer1k
    ) external {
        if (adapters[adapterId].owner != address(0)) revert AdapterExists(adapterId);
        if (contentHash == bytes32(0)) revert ZeroContentHash();
        adapters[adapterId] = Adapter(msg.sender, contentHash, baseModelHash, datanetId, priceInPer1k, priceOutPer1k);
        emit AdapterRegistered(adapterId, msg.sender, contentHash, baseModelHash, datanetId, priceInPer1k, priceOutPer1k);
    }

    /// @notice Replaces everything but the owner (a new adapter version, new prices).
    function update(
        bytes32 adapterId,
        bytes32 contentHash,
        bytes32 baseModelHash,
        bytes32 datanetId,
        uint128 priceInPer1k,
        uint128 priceOutPer1k
    ) external {
        Adapter storage a = _owned(adapterId);
        if (contentHash == bytes32(0)) revert ZeroContentHash();
        a.contentHash = contentHash;
        a.baseModelHash = baseModelHash;
        a.datanetId = datanetId;
        a.priceInPer1k = priceInPer1k;
        a.priceOutPer1k = priceOutPer1k;
        emit AdapterUpdated(adapterId, contentHash, baseModelHash, datanetId, priceInPer1k, priceOutPer1k);
    }

    /// @notice Hands the adapter (and its model-owner revenue) to `to`.
    function transferOwnership(bytes32 adapterId, address to) external {
        if (to == address(0)) revert ZeroOwner();
        Adapter storage a = _owned(adapterId);
        emit AdapterOwnerChanged(adapterId, a.owner, to);
        a.owner = to;
    }

    /// @notice The adapter's record; reverts for an unknown id so callers cannot mistake an
    ///         empty record for a registration.
    function get(bytes32 adapterId) external view returns (Adapter memory) {
        Adapter memory a = adapters[adapterId];
        if (a.owner == address(0)) revert UnknownAdapter(adapterId);
        return a;
    }

    function _owned(bytes32 adapterId) private view returns (Adapter storage a) {
        a = adapters[adapterId];
        if (a.owner == address(0)) revert UnknownAdapter(adapterId);
        if (a.owner != msg.sender) revert NotAdapterOwner(adapterId, msg.sender);
    }
}
