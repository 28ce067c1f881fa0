// SPDX-License-Identifier: Apache-2.0
// tests/contracts/ERC1967Proxy.sol: a minimal ERC-1967 proxy (implementation
// in the standard slot, optional initialization call), for the kmsctl tests.
pragma solidity ^0.8.22;

import "./Base.sol";

contract ERC1967Proxy {
    constructor(address implementation, bytes memory _data) payable {
        ERC1967Slot.set(implementation);
        if (_data.length > 0) ERC1967Slot.delegate(implementation, _data);
    }

    fallback() external payable {
        address impl = ERC1967Slot.get();
        assembly {
            calldatacopy(0, 0, calldatasize())
            let ok := delegatecall(gas(), impl, 0, calldatasize(), 0, 0)
            returndatacopy(0, 0, returndatasize())
            switch ok
            case 0 {
                revert(0, returndatasize())
            }
            default {
                return(0, returndatasize())
            }
        }
    }
}
