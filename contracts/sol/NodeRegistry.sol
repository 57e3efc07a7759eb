// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {IERC20} from "./IERC20.sol";

/// @title NodeRegistry
/// @notice Serving nodes stake OPEN here. A node counts as staked while its active stake is at
///         least `minStake` and it has never been slashed. Unstaking is two-step: stake moves to
///         `unbonding` at once (so it stops counting) and can be withdrawn only after
///         `unbondingDelay`; until then it can still be slashed, so a node cannot escape a
///         report of equivocation by unstaking right after it misbehaved.
/// @dev Storage layout is part of the interface: lorad's light client proves
///      `nodes[node].stake` (slot keccak256(node . 0) + 0) and `.slashed` (+ 2) by storage
///      proofs instead of trusting an RPC's eth_call. The Rust tests pin this layout.
contract NodeRegistry {
    struct Node {
        uint256 stake;
        uint256 unbonding;
        uint64 unbondingReadyAt;
        bool slashed;
    }

    /// slot 0
    mapping(address => Node) public nodes;
    /// slot 1: the one contract allowed to slash (Settlement), set once by the deployer.
    address public slasher;

    IERC20 public immutable token;
    uint256 public immutable minStake;
    uint64 public immutable unbondingDelay;
    address public immutable treasury;
    /// Share of a slashed amount paid to whoever proved the misbehaviour, in basis points.
    uint16 public immutable reporterBps;
    address private immutable deployer;

    event Staked(address indexed node, uint256 amount, uint256 stake);
    event UnbondRequested(address indexed node, uint256 amount, uint64 readyAt);
    event Withdrawn(address indexed node, uint256 amount);
    event Slashed(address indexed node, address indexed reporter, uint256 amount, uint256 toReporter);
    event SlasherSet(address slasher);

    error NotDeployer();
    error SlasherAlreadySet();
    error NotSlasher(address caller);
    error ZeroAmount();
    /// The node was slashed; its key may never stake again.
    error NodeSlashed(address node);
    error InsufficientStake(address node, uint256 stake, uint256 needed);
    error StillUnbonding(address node, uint64 readyAt);
    error NothingToSlash(address node);
    error InvalidBps(uint16 bps);
    error TokenTransferFailed();

    constructor(IERC20 token_, uint256 minStake_, uint64 unbondingDelay_, address treasury_, uint16 reporterBps_) {
        if (reporterBps_ > 10_000) revert InvalidBps(reporterBps_);
        token = token_;
        minStake = minStake_;
        unbondingDelay = unbondingDelay_;
        treasury = treasury_;
        reporterBps = reporterBps_;
        deployer = msg.sender;
    }

    /// @notice Names the contract allowed to slash. Once: afterwards nobody can change it.
    function setSlasher(address slasher_) external {
        if (msg.sender != deployer) revert NotDeployer();
        if (slasher != address(0)) revert SlasherAlreadySet();
        slasher = slasher_;
        emit SlasherSet(slasher_);
    }

    /// @notice Adds `amount` to the caller's stake (needs an OPEN allowance for this contract).
    function stake(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        Node storage n = nodes[msg.sender];
        if (n.slashed) revert NodeSlashed(msg.sender);
        _pull(msg.sender, amount);
        n.stake += amount;
        emit Staked(msg.sender, amount, n.stake);
    }

    /// @notice Moves `amount` of active stake to unbonding; the delay restarts for the whole
    ///         unbonding amount.
    function requestUnbond(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        Node storage n = nodes[msg.sender];
        if (n.stake < amount) revert InsufficientStake(msg.sender, n.stake, amount);
        n.stake -= amount;
        n.unbonding += amount;
        n.unbondingReadyAt = uint64(block.timestamp) + unbondingDelay;
        emit UnbondRequested(msg.sender, amount, n.unbondingReadyAt);
    }

    /// @notice Pays out the caller's unbonded stake once the delay has passed.
    function withdraw() external {
        Node storage n = nodes[msg.sender];
        uint256 amount = n.unbonding;
        if (amount == 0) revert ZeroAmount();
        if (block.timestamp < n.unbondingReadyAt) revert StillUnbonding(msg.sender, n.unbondingReadyAt);
        n.unbonding = 0;
        _push(msg.sender, amount);
        emit Withdrawn(msg.sender, amount);
    }

    /// @notice Whether `node` may sign receipts that Settlement accepts.
    function isStaked(address node) external view returns (bool) {
        Node storage n = nodes[node];
        return !n.slashed && n.stake >= minStake;
    }

    /// @notice Takes all of `node`'s stake, active and unbonding: `reporterBps` of it to the
    ///         reporter, the rest (rounding included) to the treasury. Marks the node slashed.
    function slash(address node, address reporter) external returns (uint256 amount) {
        if (msg.sender != slasher) revert NotSlasher(msg.sender);
        Node storage n = nodes[node];
        amount = n.stake + n.unbonding;
        if (amount == 0) revert NothingToSlash(node);
        n.stake = 0;
        n.unbonding = 0;
        n.slashed = true;
        uint256 toReporter = amount * reporterBps / 10_000;
        if (toReporter > 0) _push(reporter, toReporter);
        _push(treasury, amount - toReporter);
        emit Slashed(node, reporter, amount, toReporter);
    }

    function _pull(address from, uint256 amount) private {
        if (!token.transferFrom(from, address(this), amount)) revert TokenTransferFailed();
    }

    function _push(address to, uint256 amount) private {
        if (!token.transfer(to, amount)) revert TokenTransferFailed();
    }
}
