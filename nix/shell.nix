# `nix develop`: what scripts/test-all.sh needs (the Rust toolchain comes from
# rust-toolchain.toml through rustup).
{ mkShell, rustup, pkg-config, python3, nodejs_20, systemd, prometheus, dpkg }:

mkShell {
  packages = [
    rustup
    pkg-config
    (python3.withPackages (ps: [ ps.pip ps.virtualenv ]))
    nodejs_20 # solc-js and hardhat (contracts/)
    systemd # systemd-analyze for the unit checks
    prometheus # promtool check metrics
    dpkg # the Debian package test
  ];
  CARGO_TARGET_DIR = "target";
}
