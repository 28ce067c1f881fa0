// SPDX-License-Identifier: Apache-2.0
// tests/contracts/Linked.sol: a contract that needs an external library, so
// its artifact holds an unlinked placeholder (kmsctl must refuse to deploy it).
pragma solidity ^0.8.22;

library ExternalMath {
    function twice(uint256 x) external pure returns (uint256) {
        return 2 * x;
    }
}

contract NeedsLibrary {
    function four() external pure returns (uint256) {
        return ExternalMath.twice(2);
    }
}
