from ct_service.cli import entry

entry()
