// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

import {IERC20} from "./IERC20.sol";
import {NodeRegistry} from "./NodeRegistry.sol";
import {AdapterRegistry} from "./AdapterRegistry.sol";
import {DatanetRegistry} from "./DatanetRegistry.sol";

/// @title Settlement
/// @notice Settles batches of node-signed EIP-712 receipts exactly once and pays everyone an
///         answer involved: the adapter's owner, the node that served it, the Datanet
///         contributors whose data shaped it, and the treasury (stakers).
///
/// Escrow. A requester deposits OPEN for one node (`deposit(node, amount)`); only receipts that
/// node signed draw on it, so a node can never charge a requester who did not choose it.
/// Withdrawing takes a notice of `withdrawDelay` during which the node can still settle.
///
/// The split of one receipt (all integer arithmetic, floors):
///   fee          = (tokensIn * priceInPer1k + tokensOut * priceOutPer1k) / 1000
///   model owner  = fee * modelOwnerBps / 10000
///   node         = fee * nodeBps / 10000
///   pool         = fee * contributorsBps / 10000
///   contributor  = pool * share.bps / 10000, for each share (shares sum to exactly 10000)
///   treasury     = fee - model owner - node - every contributor payment
/// so the treasury receives the protocol share (10000 - the three bps), all rounding dust, and
/// the payments of contributors without a payout address. Nothing is created or lost: the
/// requester's escrow falls by exactly `fee` and the credits rise by exactly `fee`.
/// Payments are credits, withdrawn with `claim()` (one transfer per payee, not per receipt).
contract Settlement {
    struct Share {
        bytes32 contributor;
        uint16 bps;
    }

    /// Field order and types are the EIP-712 type; lorad-contracts derives its Rust type from
    /// this contract's ABI and a test checks both hashes agree.
    struct Receipt {
        bytes32 jobId;
        address requester;
        address node;
        bytes32 adapterId;
        bytes32 adapterHash;
        bytes32 baseModelHash;
        bytes32 promptHash;
        bytes32 outputHash;
        uint32 tokensIn;
        uint32 tokensOut;
        bytes32 datanetId;
        bytes32 attributionRoot;
        Share[] shares;
        uint64 l2BlockNumber;
        bytes32 l2BlockHash;
        uint64 timestamp;
    }

    struct Escrow {
        uint256 balance;
        uint256 withdrawalAmount;
        uint64 withdrawalReadyAt;
    }

    bytes32 public constant SHARE_TYPEHASH = keccak256("Share(bytes32 contributor,uint16 bps)");
    bytes32 public constant RECEIPT_TYPEHASH = keccak256(
        "Receipt(bytes32 jobId,address requester,address node,bytes32 adapterId,bytes32 adapterHash,"
        "bytes32 baseModelHash,bytes32 promptHash,bytes32 outputHash,uint32 tokensIn,uint32 tokensOut,"
        "bytes32 datanetId,bytes32 attributionRoot,Share[] shares,uint64 l2BlockNumber,bytes32 l2BlockHash,"
        "uint64 timestamp)Share(bytes32 contributor,uint16 bps)"
    );
    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    /// At most this many contributors per receipt: bounds the gas of one receipt.
    uint256 public constant MAX_SHARES = 32;
    /// secp256k1n / 2: larger s values are the malleable twin of a valid signature (EIP-2).
    uint256 private constant HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    IERC20 public immutable token;
    NodeRegistry public immutable nodes;
    AdapterRegistry public immutable adapters;
    DatanetRegistry public immutable datanets;
    address public immutable treasury;
    uint16 public immutable modelOwnerBps;
    uint16 public immutable nodeBps;
    uint16 public immutable contributorsBps;
    uint64 public immutable withdrawDelay;

    /// requester → node → escrow
    mapping(address => mapping(address => Escrow)) public escrows;
    /// Payee → OPEN it may claim.
    mapping(address => uint256) public claimable;
    /// Job id → EIP-712 digest of the receipt that settled it (zero: not settled).
    mapping(bytes32 => bytes32) public settledDigest;

    event Deposited(address indexed requester, address indexed node, uint256 amount);
    event WithdrawalRequested(address indexed requester, address indexed node, uint256 amount, uint64 readyAt);
    event Withdrawn(address indexed requester, address indexed node, uint256 amount);
    event Settled(
        bytes32 indexed jobId, address indexed node, address indexed requester, bytes32 adapterId, uint256 fee
    );
    event Claimed(address indexed payee, uint256 amount);
    event Equivocation(address indexed node, bytes32 indexed jobId, address reporter, uint256 slashed);

    error InvalidSplit();
    error LengthMismatch(uint256 receipts, uint256 signatures);
    error BadSignature(uint256 index);
    error WrongSigner(uint256 index, address signer, address node);
    error NodeNotStaked(uint256 index, address node);
    error AlreadySettled(uint256 index, bytes32 jobId);
    error AdapterHashMismatch(uint256 index, bytes32 registered, bytes32 signed);
    error BaseModelMismatch(uint256 index, bytes32 registered, bytes32 signed);
    error DatanetMismatch(uint256 index, bytes32 registered, bytes32 signed);
    error BadShares(uint256 index, uint256 count, uint256 bpsSum);
    error InsufficientEscrow(uint256 index, uint256 balance, uint256 fee);
    error NotEquivocation();
    error ZeroAmount();
    error NoWithdrawal();
    error WithdrawalNotReady(uint64 readyAt);
    error TokenTransferFailed();

    constructor(
        IERC20 token_,
        NodeRegistry nodes_,
        AdapterRegistry adapters_,
        DatanetRegistry datanets_,
        address treasury_,
        uint16 modelOwnerBps_,
        uint16 nodeBps_,
        uint16 contributorsBps_,
        uint64 withdrawDelay_
    ) {
        if (uint256(modelOwnerBps_) + nodeBps_ + contributorsBps_ > 10_000) revert InvalidSplit();
        token = token_;
        nodes = nodes_;
        adapters = adapters_;
        datanets = datanets_;
        treasury = treasury_;
        modelOwnerBps = modelOwnerBps_;
        nodeBps = nodeBps_;
        contributorsBps = contributorsBps_;
        withdrawDelay = withdrawDelay_;
    }

    // ---------------------------------------------------------------- escrow and payouts

    /// @notice Puts `amount` OPEN in escrow for receipts signed by `node`.
    function deposit(address node, uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        if (!token.transferFrom(msg.sender, address(this), amount)) revert TokenTransferFailed();
        escrows[msg.sender][node].balance += amount;
        emit Deposited(msg.sender, node, amount);
    }

    /// @notice Gives notice to withdraw `amount`; replaces an earlier notice.
    function requestWithdrawal(address node, uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        Escrow storage e = escrows[msg.sender][node];
        e.withdrawalAmount = amount;
        e.withdrawalReadyAt = uint64(block.timestamp) + withdrawDelay;
        emit WithdrawalRequested(msg.sender, node, amount, e.withdrawalReadyAt);
    }

    /// @notice Withdraws what the notice named, or what is left if receipts settled meanwhile.
    function withdraw(address node) external {
        Escrow storage e = escrows[msg.sender][node];
        if (e.withdrawalAmount == 0) revert NoWithdrawal();
        if (block.timestamp < e.withdrawalReadyAt) revert WithdrawalNotReady(e.withdrawalReadyAt);
        uint256 amount = e.withdrawalAmount < e.balance ? e.withdrawalAmount : e.balance;
        e.balance -= amount;
        e.withdrawalAmount = 0;
        if (!token.transfer(msg.sender, amount)) revert TokenTransferFailed();
        emit Withdrawn(msg.sender, node, amount);
    }

    /// @notice Pays out everything credited to the caller.
    function claim() external returns (uint256 amount) {
        amount = claimable[msg.sender];
        if (amount == 0) revert ZeroAmount();
        claimable[msg.sender] = 0;
        if (!token.transfer(msg.sender, amount)) revert TokenTransferFailed();
        emit Claimed(msg.sender, amount);
    }

    // ---------------------------------------------------------------- settlement

    /// @notice Settles every receipt or none: one bad receipt reverts the batch with an error
    ///         naming its index. Submitters skip already settled job ids (`settledDigest`).
    function settle(Receipt[] calldata receipts, bytes[] calldata signatures) external {
        if (receipts.length != signatures.length) revert LengthMismatch(receipts.length, signatures.length);
        for (uint256 i = 0; i < receipts.length; i++) {
            _settleOne(i, receipts[i], signatures[i]);
        }
    }

    function _settleOne(uint256 i, Receipt calldata r, bytes calldata signature) private {
        bytes32 digest = hashTypedReceipt(r);
        address signer = _recover(digest, signature);
        if (signer == address(0)) revert BadSignature(i);
        if (signer != r.node) revert WrongSigner(i, signer, r.node);
        if (!nodes.isStaked(r.node)) revert NodeNotStaked(i, r.node);
        if (settledDigest[r.jobId] != bytes32(0)) revert AlreadySettled(i, r.jobId);
        settledDigest[r.jobId] = digest;

        // Reverts with UnknownAdapter for an unregistered id.
        AdapterRegistry.Adapter memory a = adapters.get(r.adapterId);
        if (a.contentHash != r.adapterHash) revert AdapterHashMismatch(i, a.contentHash, r.adapterHash);
        if (a.baseModelHash != r.baseModelHash) revert BaseModelMismatch(i, a.baseModelHash, r.baseModelHash);
        if (a.datanetId != r.datanetId) revert DatanetMismatch(i, a.datanetId, r.datanetId);
        _checkShares(i, r.shares);

        uint256 fee = (uint256(r.tokensIn) * a.priceInPer1k + uint256(r.tokensOut) * a.priceOutPer1k) / 1000;
        Escrow storage e = escrows[r.requester][r.node];
        if (e.balance < fee) revert InsufficientEscrow(i, e.balance, fee);
        e.balance -= fee;
        _split(fee, a.owner, r);
        emit Settled(r.jobId, r.node, r.requester, r.adapterId, fee);
    }

    function _checkShares(uint256 i, Share[] calldata shares) private pure {
        uint256 sum = 0;
        for (uint256 k = 0; k < shares.length; k++) {
            sum += shares[k].bps;
        }
        if (shares.length == 0 || shares.length > MAX_SHARES || sum != 10_000) {
            revert BadShares(i, shares.length, sum);
        }
    }

    function _split(uint256 fee, address modelOwner, Receipt calldata r) private {
        uint256 toOwner = fee * modelOwnerBps / 10_000;
        uint256 toNode = fee * nodeBps / 10_000;
        uint256 pool = fee * contributorsBps / 10_000;
        uint256 paid = toOwner + toNode;
        claimable[modelOwner] += toOwner;
        claimable[r.node] += toNode;
        for (uint256 k = 0; k < r.shares.length; k++) {
            address payout = datanets.payoutOf(r.datanetId, r.shares[k].contributor);
            if (payout == address(0)) continue; // unclaimed: stays with the treasury
            uint256 amount = pool * r.shares[k].bps / 10_000;
            claimable[payout] += amount;
            paid += amount;
        }
        claimable[treasury] += fee - paid;
    }

    // ---------------------------------------------------------------- equivocation

    /// @notice Two different receipts for one job id signed by the same key prove the node
    ///         equivocated: all its stake is slashed (part of it to the caller).
    function reportEquivocation(Receipt calldata a, bytes calldata sigA, Receipt calldata b, bytes calldata sigB)
        external
    {
        bytes32 da = hashTypedReceipt(a);
        bytes32 db = hashTypedReceipt(b);
        if (a.jobId != b.jobId || da == db) revert NotEquivocation();
        address signer = _recover(da, sigA);
        if (signer == address(0) || signer != a.node || _recover(db, sigB) != signer) revert NotEquivocation();
        uint256 slashed = nodes.slash(signer, msg.sender);
        emit Equivocation(signer, a.jobId, msg.sender, slashed);
    }

    // ---------------------------------------------------------------- EIP-712

    function domainSeparator() public view returns (bytes32) {
        return keccak256(
            abi.encode(DOMAIN_TYPEHASH, keccak256("lorad Settlement"), keccak256("1"), block.chainid, address(this))
        );
    }

    /// @notice EIP-712 hashStruct(receipt).
    function hashReceipt(Receipt calldata r) public pure returns (bytes32) {
        bytes32[] memory shareHashes = new bytes32[](r.shares.length);
        for (uint256 k = 0; k < r.shares.length; k++) {
            shareHashes[k] = keccak256(abi.encode(SHARE_TYPEHASH, r.shares[k].contributor, r.shares[k].bps));
        }
        bytes32 sharesHash = keccak256(abi.encodePacked(shareHashes));
        // Two halves: one abi.encode of all seventeen words needs more stack slots than the
        // legacy code generator has.
        return keccak256(
            bytes.concat(
                abi.encode(
                    RECEIPT_TYPEHASH, r.jobId, r.requester, r.node, r.adapterId, r.adapterHash, r.baseModelHash
                ),
                abi.encode(r.promptHash, r.outputHash, r.tokensIn, r.tokensOut, r.datanetId, r.attributionRoot),
                abi.encode(sharesHash, r.l2BlockNumber, r.l2BlockHash, r.timestamp)
            )
        );
    }

    /// @notice The digest a node signs: keccak256(0x1901 . domainSeparator . hashStruct).
    function hashTypedReceipt(Receipt calldata r) public view returns (bytes32) {
        return keccak256(abi.encodePacked(hex"1901", domainSeparator(), hashReceipt(r)));
    }

    /// 65-byte r . s . v signatures, v 27 or 28, low s (EIP-2); zero address when malformed.
    function _recover(bytes32 digest, bytes calldata sig) private pure returns (address) {
        if (sig.length != 65) return address(0);
        bytes32 r = bytes32(sig[0:32]);
        bytes32 s = bytes32(sig[32:64]);
        uint8 v = uint8(sig[64]);
        if (uint256(s) > HALF_N || (v != 27 && v != 28)) return address(0);
        return ecrecover(digest, v, r, s);
    }
}
