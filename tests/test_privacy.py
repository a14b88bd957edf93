from hotline.privacy import mask_name, mask_phone


def test_phone_numbers_keep_only_prefix_and_last_four() -> None:
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("+86 138-1234-5678") == "861****5678"
    assert mask_phone("0574-62345678") == "057****5678"
    assert mask_phone("120") == "*20"
    assert mask_phone(None) == "-"


def test_names_keep_only_the_family_name() -> None:
    assert mask_name("张三丰") == "张**"
    assert mask_name("") == "-"
