{
  description = "lorad: one daemon per GPU node serving many LoRA adapters over one base LLM, with Proof of Attribution";

  # nixpkgs is the only input. This repository's CI cannot reach it, so CI only parses the
  # .nix files (scripts/nix-check.sh); `nix build` and `nix flake check` need a machine with
  # network access.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (pkgs: rec {
        lorad = pkgs.callPackage ./nix/package.nix { };
        default = lorad;
      });

      devShells = forAllSystems (pkgs: {
        default = pkgs.callPackage ./nix/shell.nix { };
      });

      # services.lorad: the unit's hardening and the configuration file as Nix options.
      nixosModules.default = import ./nix/module.nix self;

      checks = forAllSystems (pkgs: {
        package = self.packages.${pkgs.stdenv.hostPlatform.system}.lorad;
      });
    };
}
