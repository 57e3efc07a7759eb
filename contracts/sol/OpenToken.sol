// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.37;

/// @title OpenToken
/// @notice ERC-20 standing in for OPEN on local and test chains: a fixed supply of
///         1,000,000,000 tokens (18 decimals), all minted to the deployer. No mint, no burn,
///         no owner: the supply can only move.
contract OpenToken {
    string public constant name = "Open";
    string public constant symbol = "OPEN";
    uint8 public constant decimals = 18;
    uint256 public constant totalSupply = 1_000_000_000 * 10 ** 18;

    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);

    /// The sender holds `balance`, less than the `needed` it tried to move.
    error InsufficientBalance(address from, uint256 balance, uint256 needed);
    /// The spender may move `allowance` of `from`'s tokens, less than `needed`.
    error InsufficientAllowance(address from, address spender, uint256 allowance, uint256 needed);
    /// Tokens sent to the zero address would be lost.
    error TransferToZero();

    constructor() {
        balanceOf[msg.sender] = totalSupply;
        emit Transfer(address(0), msg.sender, totalSupply);
    }

    function transfer(address to, uint256 value) external returns (bool) {
        _move(msg.sender, to, value);
        return true;
    }

    function approve(address spender, uint256 value) external returns (bool) {
        allowance[msg.sender][spender] = value;
        emit Approval(msg.sender, spender, value);
        return true;
    }

    function transferFrom(address from, address to, uint256 value) external returns (bool) {
        uint256 allowed = allowance[from][msg.sender];
        if (allowed != type(uint256).max) {
            if (allowed < value) revert InsufficientAllowance(from, msg.sender, allowed, value);
            allowance[from][msg.sender] = allowed - value;
        }
        _move(from, to, value);
        return true;
    }

    function _move(address from, address to, uint256 value) private {
        if (to == address(0)) revert TransferToZero();
        uint256 balance = balanceOf[from];
        if (balance < value) revert InsufficientBalance(from, balance, value);
        unchecked {
            // Cannot underflow (checked above) and cannot overflow: the supply is fixed.
            balanceOf[from] = balance - value;
            balanceOf[to] += value;
        }
        emit Transfer(from, to, value);
    }
}
