from django.db import migrations

PRODUCTS = [
    ("Coffee beans, 250 g", "Single-origin, roasted this week.", 1250, 1),
    ("Ceramic mug", "Holds 350 ml, dishwasher safe.", 1800, 2),
    ("Pour-over filter papers (100)", "Unbleached, fits size 02 drippers.", 650, 3),
]


def add_products(apps, schema_editor):
    Product = apps.get_model("shop", "Product")
    for name, description, unit_amount, position in PRODUCTS:
        Product.objects.get_or_create(
            name=name,
            defaults={"description": description, "unit_amount": unit_amount, "position": position},
        )


def remove_products(apps, schema_editor):
    Product = apps.get_model("shop", "Product")
    Product.objects.filter(name__in=[name for name, *_ in PRODUCTS]).delete()


class Migration(migrations.Migration):
    dependencies = [("shop", "0001_initial")]
    operations = [migrations.RunPython(add_products, remove_products)]
