// The local EVM node tests start (`hardhat node --config contracts/hardhat.config.cjs`): chain
// id 31337, automine, so each transaction is one block. Nothing is compiled by hardhat; the
// contracts come from contracts/out/ (solc-js, scripts/contracts.sh).
module.exports = {
  networks: { hardhat: { chainId: 31337 } },
};
