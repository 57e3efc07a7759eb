// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title DatanetRegistry
/// @notice Datanet id → owner and the Merkle root of its record hashes, plus where each
///         contributor is paid. A contributor id is keccak256 of the contributor's name as the
///         Datanet's records spell it (lorad-datanet normalizes it); the owner names the first
///         payout address, after which only that address can move it.
/// @dev The Merkle construction is lorad-datanet's "keccak256-sorted-pairs-v1":
///      leaf = keccak256(0x00 . recordHash), node = keccak256(0x01 . min(a, b) . max(a, b)).
contract DatanetRegistry {
    struct Datanet {
        address owner;
        bytes32 recordsRoot;
    }

    /// slot 0
    mapping(bytes32 => Datanet) public datanets;
    /// slot 1: datanet id → contributor id → payout address.
    mapping(bytes32 => mapping(bytes32 => address)) public payoutOf;

    event DatanetCreated(bytes32 indexed datanetId, address indexed owner, bytes32 recordsRoot);
    event RecordsRootChanged(bytes32 indexed datanetId, bytes32 recordsRoot);
    event PayoutSet(bytes32 indexed datanetId, bytes32 indexed contributorId, address payout);

    error DatanetExists(bytes32 datanetId);
    error UnknownDatanet(bytes32 datanetId);
    error NotDatanetOwner(bytes32 datanetId, address caller);
    /// Only the current payout address may move a payout once it is set.
    error NotPayoutHolder(bytes32 datanetId, bytes32 contributorId, address caller);
    error ZeroPayout();

    function create(bytes32 datanetId, bytes32 recordsRoot) external {
        if (datanets[datanetId].owner != address(0)) revert DatanetExists(datanetId);
        datanets[datanetId] = Datanet(msg.sender, recordsRoot);
        emit DatanetCreated(datanetId, msg.sender, recordsRoot);
    }

    /// @notice A new version of the Datanet (records added or removed).
    function setRecordsRoot(bytes32 datanetId, bytes32 recordsRoot) external {
        _owned(datanetId).recordsRoot = recordsRoot;
        emit RecordsRootChanged(datanetId, recordsRoot);
    }

    /// @notice Sets where `contributorId` is paid: the Datanet owner while it is unset, the
    ///         current payout address afterwards.
    function setPayout(bytes32 datanetId, bytes32 contributorId, address payout) external {
        if (payout == address(0)) revert ZeroPayout();
        Datanet storage d = datanets[datanetId];
        if (d.owner == address(0)) revert UnknownDatanet(datanetId);
        address current = payoutOf[datanetId][contributorId];
        if (current == address(0)) {
            if (msg.sender != d.owner) revert NotDatanetOwner(datanetId, msg.sender);
        } else if (msg.sender != current) {
            revert NotPayoutHolder(datanetId, contributorId, msg.sender);
        }
        payoutOf[datanetId][contributorId] = payout;
        emit PayoutSet(datanetId, contributorId, payout);
    }

    /// @notice Whether `recordHash` is in the Datanet, given its Merkle proof (siblings, bottom up).
    function containsRecord(bytes32 datanetId, bytes32 recordHash, bytes32[] calldata proof)
        external
        view
        returns (bool)
    {
        bytes32 h = keccak256(abi.encodePacked(bytes1(0x00), recordHash));
        for (uint256 i = 0; i < proof.length; i++) {
            bytes32 s = proof[i];
            h = h < s
                ? keccak256(abi.encodePacked(bytes1(0x01), h, s))
                : keccak256(abi.encodePacked(bytes1(0x01), s, h));
        }
        return h == datanets[datanetId].recordsRoot;
    }

    function _owned(bytes32 datanetId) private view returns (Datanet storage d) {
        d = datanets[datanetId];
        if (d.owner == address(0)) revert UnknownDatanet(datanetId);
        if (d.owner != msg.sender) revert NotDatanetOwner(datanetId, msg.sender);
    }
}
