// SPDX-License-Identifier: Apache-2.0
// tests/contracts/Base.sol: minimal ownable, initializable and UUPS
// upgradeable bases for the kmsctl test contracts, written for these tests.
// Same external surface (functions, events, custom errors) as the
// OpenZeppelin 5 upgradeable contracts the dstack contracts inherit.
pragma solidity ^0.8.22;

abstract contract Initializable {
    event Initialized(uint64 version);

    error InvalidInitialization();
    error NotInitializing();

    uint64 private _initVersion;
    bool private _initializing;

    modifier initializer() {
        if (_initializing || _initVersion != 0) revert InvalidInitialization();
        _initVersion = 1;
        _initializing = true;
        _;
        _initializing = false;
        emit Initialized(1);
    }

    modifier onlyInitializing() {
        if (!_initializing) revert NotInitializing();
        _;
    }

    function _disableInitializers() internal {
        if (_initializing) revert InvalidInitialization();
        if (_initVersion != type(uint64).max) {
            _initVersion = type(uint64).max;
            emit Initialized(type(uint64).max);
        }
    }
}

abstract contract OwnableBase is Initializable {
    event OwnershipTransferred(address indexed previousOwner, address indexed newOwner);

    error OwnableUnauthorizedAccount(address account);
    error OwnableInvalidOwner(address owner);

    address private _owner;

    modifier onlyOwner() {
        if (msg.sender != _owner) revert OwnableUnauthorizedAccount(msg.sender);
        _;
    }

    function _initOwner(address initialOwner) internal onlyInitializing {
        if (initialOwner == address(0)) revert OwnableInvalidOwner(address(0));
        _setOwner(initialOwner);
    }

    function owner() public view returns (address) {
        return _owner;
    }

    function transferOwnership(address newOwner) public onlyOwner {
        if (newOwner == address(0)) revert OwnableInvalidOwner(address(0));
        _setOwner(newOwner);
    }

    function renounceOwnership() public onlyOwner {
        _setOwner(address(0));
    }

    function _setOwner(address newOwner) private {
        address old = _owner;
        _owner = newOwner;
        emit OwnershipTransferred(old, newOwner);
    }
}

library ERC1967Slot {
    // bytes32(uint256(keccak256("eip1967.proxy.implementation")) - 1)
    bytes32 internal constant IMPLEMENTATION =
        0x360894a13ba1a3210667c828492db98dca3e2076cc3735a920a3ca505d382bbc;

    event Upgraded(address indexed implementation);

    error ERC1967InvalidImplementation(address implementation);

    function get() internal view returns (address impl) {
        bytes32 slot = IMPLEMENTATION;
        assembly {
            impl := sload(slot)
        }
    }

    function set(address impl) internal {
        if (impl.code.length == 0) revert ERC1967InvalidImplementation(impl);
        bytes32 slot = IMPLEMENTATION;
        assembly {
            sstore(slot, impl)
        }
        emit Upgraded(impl);
    }

    function delegate(address target, bytes memory data) internal {
        (bool ok, bytes memory ret) = target.delegatecall(data);
        if (!ok) {
            assembly {
                revert(add(ret, 32), mload(ret))
            }
        }
    }
}

abstract contract UUPSBase is OwnableBase {
    error UUPSUnauthorizedCallContext();
    error UUPSUnsupportedProxiableUUID(bytes32 slot);

    string public constant UPGRADE_INTERFACE_VERSION = "5.0.0";
    address private immutable __self = address(this);

    modifier onlyProxy() {
        if (address(this) == __self || ERC1967Slot.get() != __self)
            revert UUPSUnauthorizedCallContext();
        _;
    }

    modifier notDelegated() {
        if (address(this) != __self) revert UUPSUnauthorizedCallContext();
        _;
    }

    function proxiableUUID() external view notDelegated returns (bytes32) {
        return ERC1967Slot.IMPLEMENTATION;
    }

    function upgradeToAndCall(address newImplementation, bytes memory data)
        public
        payable
        onlyProxy
        onlyOwner
    {
        _authorizeUpgrade(newImplementation);
        try UUPSBase(newImplementation).proxiableUUID() returns (bytes32 slot) {
            if (slot != ERC1967Slot.IMPLEMENTATION)
                revert UUPSUnsupportedProxiableUUID(slot);
        } catch {
            revert ERC1967Slot.ERC1967InvalidImplementation(newImplementation);
        }
        ERC1967Slot.set(newImplementation);
        if (data.length > 0) ERC1967Slot.delegate(newImplementation, data);
    }

    function _authorizeUpgrade(address newImplementation) internal virtual;
}

interface IAppAuth {
    struct AppBootInfo {
        address appId;
        bytes32 composeHash;
        address instanceId;
        bytes32 deviceId;
        bytes32 mrAggregated;
        bytes32 mrSystem;
        bytes32 osImageHash;
        string tcbStatus;
        string[] advisoryIds;
    }

    function isAppAllowed(AppBootInfo calldata bootInfo)
        external
        view
        returns (bool isAllowed, string memory reason);
}
